// llama_serve: serves a Llama-architecture model through frugal (see docs/llama.md).
//   llama_serve --model tests/data/stories260K/stories260K.bin --prompts prompts.txt --json
//   llama_serve --model ... --prompts ... --compare int8_channel,q4_0,nvfp4
//   llama_serve --model ... --prompts ... --disaggregated --transport shm
#include "disaggregated.hpp"
#include "llama.hpp"
#include "serve.hpp"

#include <frugal/error.hpp>
#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/pool.hpp>
#include <frugal/mr/tracking_adaptor.hpp>
#include <frugal/quant/format.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

namespace {

/// One request per non-blank line: token ids separated by spaces.
std::vector<llama::prompt> read_prompts(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("cannot open the prompts file " + path);
  std::vector<llama::prompt> prompts;
  std::string line;
  std::size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    std::istringstream words(line);
    llama::prompt p;
    std::string word;
    while (words >> word) {
      std::size_t used = 0;
      long long id = 0;
      try {
        id = std::stoll(word, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != word.size() || id < INT32_MIN || id > INT32_MAX)
        throw std::invalid_argument(path + ":" + std::to_string(number) + ": \"" + word +
                                    "\" is not a token id");
      p.push_back(static_cast<std::int32_t>(id));
    }
    if (!p.empty()) prompts.push_back(std::move(p));
  }
  if (prompts.empty()) throw std::invalid_argument(path + " holds no request");
  return prompts;
}

std::vector<std::string> split(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream s(list);
  std::string item;
  while (std::getline(s, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

nlohmann::json to_json(const llama::serve_summary& s) {
  return {{"tokens_per_second", s.tokens_per_second},
          {"seconds", s.seconds},
          {"generated_tokens", s.generated_tokens},
          {"steps", s.steps},
          {"peak_kv_bytes", s.peak_kv_bytes},
          {"kv_bytes_static", s.kv_bytes_static},
          {"kv_pool_bytes", s.kv_pool_bytes},
          {"peak_workspace_bytes", s.peak_workspace_bytes},
          {"weight_bytes", s.weight_bytes},
          {"weight_format", s.weight_format},
          {"pages_used_peak", s.pages_used_peak},
          {"pages_total", s.pages_total},
          {"preemptions", s.preemptions},
          {"prefix_hit_tokens", s.prefix_hit_tokens},
          {"other_outstanding_bytes", s.other_outstanding_bytes}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "llama_serve: a Llama-architecture model served through frugal's pages, scheduler "
      "and quantized weights"};
  std::string model_path, prompts_path, weights = "float32", kv_dtype = "fp32",
                                        preemption = "recompute";
  std::string compare_formats;
  llama::serve_options options;
  bool json = false, no_prefix = false, run_static = false, bench = false, choose = false;
  double max_kl = 0.01;
  std::size_t kv_memory = 0;
  app.add_option("--model", model_path, "llama2.c .bin file or Hugging Face folder")->required();
  app.add_option("--prompts", prompts_path, "one request per line: token ids, the first BOS (1)")
      ->required();
  app.add_option("--max-new-tokens", options.max_new_tokens, "tokens to generate per request")
      ->check(CLI::PositiveNumber);
  app.add_option("--max-num-seqs", options.max_num_seqs, "sequences running at once")
      ->check(CLI::PositiveNumber);
  app.add_option("--max-batched-tokens", options.max_batched_tokens, "tokens computed per step")
      ->check(CLI::PositiveNumber);
  app.add_option("--temperature", options.sample.temperature, "0: greedy")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--top-p", options.sample.top_p, "nucleus sampling mass")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--seed", options.sample.seed, "sampling seed");
  app.add_option("--weights", weights,
                 "weight format of the projections (float32 or a frugal format)");
  app.add_option("--kv-dtype", kv_dtype, "fp32, fp16, bf16, fp8_e4m3, fp8_e5m2 or int8");
  app.add_option("--kv-memory", kv_memory, "bytes of KV pages (e.g. 4MiB)")
      ->transform(CLI::AsSizeValue(false));
  app.add_option("--pages", options.pages, "KV pages (when --kv-memory is not given)")
      ->check(CLI::PositiveNumber);
  app.add_option("--page-size", options.page_size, "tokens per page")->check(CLI::PositiveNumber);
  app.add_option("--preemption", preemption, "recompute or swap")
      ->check(CLI::IsMember({"recompute", "swap"}));
  app.add_flag("--no-prefix-caching", no_prefix, "turn prefix caching off");
  app.add_flag("--json", json, "print JSON");
  app.add_flag("--static", run_static,
               "serve one request at a time with seq_len of KV reserved each "
               "(llama2.c's design) instead");
  app.add_flag("--bench", bench, "serve through frugal and through the static loop; print both");
  app.add_option("--compare", compare_formats,
                 "FORMAT[,FORMAT...]: model-level accuracy against FP32");
  app.add_flag("--choose", choose, "pick the lowest-bit format whose mean KL stays under --max-kl");
  app.add_option("--max-kl", max_kl, "bound on mean KL divergence for --choose")
      ->check(CLI::PositiveNumber);
  bool disaggregated = false;
  llama::disaggregated_options split_options;
  app.add_flag("--disaggregated", disaggregated,
               "prefill in this process, decode in a second one it starts; KV pages move over UCX");
  app.add_option("--transport", split_options.transport, "with --disaggregated: tcp or shm")
      ->check(CLI::IsMember({"tcp", "shm"}));
  app.add_option("--kill-decode-after", split_options.kill_decode_after,
                 "with --disaggregated, for tests: the decode process kills itself after "
                 "receiving this many sequences");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    (void)app.exit(e);
    return 2;
  }

  // Every byte the engine holds comes through one pool behind a tracking adaptor.
  frugal::host_resource host;
  frugal::pool_resource<frugal::ref_t<frugal::host_resource>> pool{frugal::ref(host)};
  frugal::tracking_adaptor<frugal::ref_t<decltype(pool)>> memory{frugal::ref(pool)};
  try {
    options.kv_memory = kv_memory;
    options.kv_dtype = frugal::kv::parse_dtype(kv_dtype);
    options.prefix_caching = !no_prefix;
    options.preemption = preemption == "swap" ? frugal::batch::preemption_mode::swap
                                              : frugal::batch::preemption_mode::recompute;
    const std::vector<llama::prompt> prompts = read_prompts(prompts_path);
    const llama::model m = llama::load(model_path, memory, {.format = weights});
    const std::size_t weights_outstanding = memory.outstanding_bytes();

    if (!compare_formats.empty() || choose) {
      std::vector<std::string> formats = split(compare_formats);
      if (formats.empty())
        for (const auto& f : frugal::quant::all_formats()) formats.emplace_back(f.name);
      const auto results =
          llama::compare(m, model_path, memory, prompts, formats, options.max_new_tokens);
      const llama::format_comparison* chosen = nullptr;
      for (const auto& r : results)
        if (r.stats.kl_mean <= max_kl &&
            (chosen == nullptr || r.weight_bytes < chosen->weight_bytes))
          chosen = &r;
      if (json) {
        nlohmann::json out, table = nlohmann::json::object();
        for (const auto& r : results)
          table[r.format] = {{"kl_mean", r.stats.kl_mean},
                             {"kl_median", r.stats.kl_median},
                             {"kl_p90", r.stats.kl_p90},
                             {"kl_p99", r.stats.kl_p99},
                             {"kl_max", r.stats.kl_max},
                             {"top1_agreement", r.stats.top1_agreement},
                             {"top5_overlap", r.stats.top5_overlap},
                             {"ppl_ratio", r.stats.ppl_ratio},
                             {"positions", r.stats.positions},
                             {"weight_bytes", r.weight_bytes},
                             {"kept_float32", r.kept_float}};
        out["compare"] = table;
        out["reference_weight_bytes"] = m.weight_bytes();
        if (choose)
          out["chosen"] = chosen ? nlohmann::json(chosen->format) : nlohmann::json(nullptr);
        std::cout << out.dump(2) << "\n";
      } else {
        std::printf("%-18s %10s %10s %10s %10s %7s %7s %9s %12s\n", "format", "KL mean",
                    "KL median", "KL p99", "KL max", "top-1", "top-5", "ppl ratio", "weight bytes");
        std::printf("%-18s %10s %10s %10s %10s %7s %7s %9s %12zu\n", "float32 (ref)", "-", "-", "-",
                    "-", "-", "-", "-", m.weight_bytes());
        for (const auto& r : results)
          std::printf("%-18s %10.6f %10.6f %10.6f %10.6f %6.1f%% %6.1f%% %9.4f %12zu%s\n",
                      r.format.c_str(), r.stats.kl_mean, r.stats.kl_median, r.stats.kl_p99,
                      r.stats.kl_max, 100 * r.stats.top1_agreement, 100 * r.stats.top5_overlap,
                      r.stats.ppl_ratio, r.weight_bytes,
                      r.kept_float.empty()
                          ? ""
                          : (" (" + std::to_string(r.kept_float.size()) + " matrices kept float32)")
                                .c_str());
        if (choose)
          std::printf("chosen at mean KL <= %g: %s\n", max_kl,
                      chosen ? chosen->format.c_str() : "none");
      }
      return choose && chosen == nullptr ? 1 : 0;
    }

    llama::serve_result result;
    llama::serve_result baseline;
    if (disaggregated) {
      if (run_static || bench)
        throw std::invalid_argument("--disaggregated cannot be combined with --static or --bench");
      result = llama::serve_disaggregated(m, memory, options, prompts, split_options);
    } else if (run_static) {
      result = llama::serve_static(m, memory, prompts, options.max_new_tokens, options.sample);
    } else {
      llama::engine e{m, memory, options};
      result = e.serve(prompts);
      if (bench)
        baseline = llama::serve_static(m, memory, prompts, options.max_new_tokens, options.sample);
    }
    result.summary.other_outstanding_bytes = memory.outstanding_bytes() - weights_outstanding;

    if (json) {
      nlohmann::json out;
      out["requests"] = nlohmann::json::array();
      for (const auto& r : result.requests)
        out["requests"].push_back({{"id", r.index + 1},
                                   {"prompt_tokens", r.prompt_tokens},
                                   {"output_tokens", r.output},
                                   {"cached_tokens", r.cached_tokens},
                                   {"preemptions", r.preemptions},
                                   {"hit_eos", r.hit_eos}});
      out["summary"] = to_json(result.summary);
      if (bench) {
        out["static"] = to_json(baseline.summary);
        out["speedup"] = result.summary.tokens_per_second / baseline.summary.tokens_per_second;
      }
      std::cout << out.dump(2) << "\n";
    } else {
      for (const auto& r : result.requests) {
        for (std::size_t i = 0; i < r.output.size(); ++i)
          std::printf(i ? " %d" : "%d", r.output[i]);
        std::printf("\n");
      }
      const auto& s = result.summary;
      std::fprintf(stderr,
                   "%zu requests, %zu tokens in %.3f s (%.0f tokens/s), %zu steps; KV peak %zu "
                   "bytes (%u of %u pages) vs %zu reserved statically; workspace peak %zu bytes; "
                   "weights %zu bytes (%s); %zu preemptions, %zu prefix-hit tokens\n",
                   result.requests.size(), s.generated_tokens, s.seconds, s.tokens_per_second,
                   s.steps, s.peak_kv_bytes, s.pages_used_peak, s.pages_total, s.kv_bytes_static,
                   s.peak_workspace_bytes, s.weight_bytes, s.weight_format.c_str(), s.preemptions,
                   s.prefix_hit_tokens);
      if (bench)
        std::fprintf(stderr, "static loop: %.0f tokens/s; frugal %.2fx\n",
                     baseline.summary.tokens_per_second,
                     s.tokens_per_second / baseline.summary.tokens_per_second);
    }
    if (result.summary.other_outstanding_bytes != 0) {
      std::fprintf(stderr, "llama_serve: %zu bytes outstanding after the run:\n%s\n",
                   result.summary.other_outstanding_bytes, memory.report().c_str());
      return 1;
    }
    return 0;
  } catch (const std::bad_alloc& e) {
    std::fprintf(stderr, "llama_serve: out of memory: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {  // a bad model file, request or option value
    std::fprintf(stderr, "llama_serve: %s\n", e.what());
    return 1;
  }
}
