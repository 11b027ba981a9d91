// A paged KV cache under your own attention kernels: prompts with a shared system prompt reuse
// its pages, a beam forks with copy-on-write, and the page tables come out in FlashInfer's and
// vLLM's formats.
#include <frugal/frugal.hpp>

#include <cstdio>
#include <numeric>
#include <vector>

int main() {
  // A Llama-3-8B-shaped layer stack over a simulated 8 GiB of device memory.
  const frugal::kv::layout layout{
      .num_layers = 32, .num_kv_heads = 8, .head_dim = 128, .page_size = 16};
  frugal::virtual_resource device{{.reserve_bytes = std::size_t{8} << 30, .commit = false}};
  const auto num_pages =
      static_cast<std::uint32_t>(frugal::kv::pages_that_fit(layout, std::size_t{8} << 30));
  frugal::kv::cache kv{layout, num_pages, device};
  std::printf("%u pages of %s; %.0f sequences of 2,048 tokens fit\n", num_pages,
              frugal::format_bytes(layout.page_bytes()).c_str(),
              frugal::kv::max_concurrency(layout, num_pages, 2048));

  std::vector<frugal::kv::token_id> system_prompt(200);
  std::iota(system_prompt.begin(), system_prompt.end(), 1000);
  auto with_question = [&](int question) {
    auto prompt = system_prompt;
    for (int i = 0; i < 43; ++i) prompt.push_back(question * 100 + i);
    return prompt;
  };
  auto first = kv.add_sequence(with_question(1));
  auto second = kv.add_sequence(with_question(2));  // its first 12 pages are first's
  std::printf("second prompt: %zu of %zu tokens served from the prefix cache\n",
              second.cached_tokens(), second.num_tokens());

  auto beam = kv.fork(second);  // shares every page
  const std::vector<frugal::kv::token_id> next{7};
  kv.append(beam, next);  // writes into a shared, partly filled page: copy-on-write
  for (const auto& op : kv.take_copy_ops())
    std::printf("copy page %u -> %u before the next kernel\n", op.src, op.dst);

  const frugal::kv::sequence* batch[] = {&first, &second, &beam};
  const auto table = kv.export_flashinfer(batch);
  std::printf("FlashInfer: %zu sequences, %zu page indices, last page lengths %d %d %d\n",
              table.indptr.size() - 1, table.indices.size(), table.last_page_len[0],
              table.last_page_len[1], table.last_page_len[2]);
  const auto s = kv.stats();
  std::printf("pages used %u, cached %u, free %u; slots held but empty %.1f%%\n", s.used_pages,
              s.cached_pages, s.free_pages, 100 * s.waste());
}
