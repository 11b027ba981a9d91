// `frugal plan`: how a model fits a GPU. For each weight format and KV type asked for, the memory
// budget (weights, activation workspace, KV pages, headroom, which add up to the GPU's memory),
// the pages that fit, and the sequences of the given context length that can run at once. The
// split is the serving simulator's (frugal::sim::budget), so plan and report agree.
#include "common.hpp"

#include <frugal/sim/simulator.hpp>

#include <cstdio>
#include <memory>

namespace frugal::cli {
namespace {

struct plan_options {
  std::string model = "llama-3-8b";
  std::string gpu_memory = "80GiB";
  // Kept out of the budget: what the model does not count takes memory on a real GPU (the CUDA
  // context with its loaded kernels, cuBLAS and NCCL workspaces, the allocator's own slack).
  std::string headroom = "1GiB";
  std::vector<std::string> weights_formats;
  std::vector<std::string> kv_dtypes;
  std::uint32_t context = 0;  // 0: min(4096, the model's context)
  std::uint32_t page_size = 16;
  std::uint32_t max_batched_tokens = 8192;
  std::uint32_t max_num_seqs = 1024;
  bool json = false;
};

json shape_json(const model_choice& m) {
  const sim::model_shape& s = m.shape;
  return {{"name", std::string(s.name)},
          {"source", m.source},
          {"num_layers", s.num_layers},
          {"hidden_size", s.hidden_size},
          {"num_heads", s.num_heads},
          {"num_kv_heads", s.num_kv_heads},
          {"head_dim", s.head_dim},
          {"intermediate_size", s.intermediate_size},
          {"vocab_size", s.vocab_size},
          {"max_context", s.max_context},
          {"num_parameters", s.num_parameters},
          {"active_parameters", s.active_parameters()},
          {"model_type", std::string(s.model_type)},
          {"tied_embeddings", s.tied_embeddings},
          {"num_experts", s.num_experts},
          {"experts_per_token", s.experts_per_token},
          {"num_moe_layers", s.num_moe_layers},
          {"kv_lora_rank", s.kv_lora_rank},
          {"sliding_window", s.sliding_window},
          {"window_layers", s.window_layers}};
}

void run_plan(const plan_options& o) {
  const model_choice model = resolve_model(o.model);
  const std::size_t gpu_memory = parse_size(o.gpu_memory);
  const std::size_t reserve = parse_size(o.headroom);
  if (reserve >= gpu_memory)
    FRUGAL_FAIL("--headroom " + o.headroom + " leaves nothing of --gpu-memory " + o.gpu_memory,
                usage_error);
  std::vector<std::string> formats = split_list(o.weights_formats);
  if (formats.empty()) formats = {"fp16"};
  for (const std::string& f : formats)
    if (!is_weight_format(f))
      FRUGAL_FAIL("--weights-format: unknown format \"" + f + "\"; known: " + weight_format_names(),
                  usage_error);
  std::vector<kv::dtype> dtypes;
  for (const std::string& d : split_list(o.kv_dtypes)) dtypes.push_back(parse_kv_dtype(d));
  if (dtypes.empty()) dtypes = {kv::dtype::fp16};
  const std::uint32_t context =
      o.context != 0 ? o.context : std::min<std::uint32_t>(4096, model.shape.max_context);
  if (context < 2 || context > model.shape.max_context)
    FRUGAL_FAIL("--context " + std::to_string(context) + " is outside 2.." +
                    std::to_string(model.shape.max_context) + ", " + std::string(model.shape.name) +
                    "'s context",
                usage_error);
  if (o.page_size == 0) FRUGAL_FAIL("--page-size must be positive", usage_error);

  json out{{"model", shape_json(model)},    {"gpu_memory", gpu_memory},
           {"headroom_reserved", reserve},  {"context", context},
           {"page_size", o.page_size},      {"max_batched_tokens", o.max_batched_tokens},
           {"max_num_seqs", o.max_num_seqs}};
  json plans = json::array();
  table t({"weights", "KV", "bits/weight", "weights", "workspace", "KV pages", "headroom", "pages",
           "tokens", "sequences"},
          2);
  for (const std::string& f : formats) {
    // A quantization format whose blocks do not divide a matrix marks its rows, not the command.
    std::size_t weights = 0;
    std::string unusable;
    try {
      weights = cli::weight_bytes(model.shape, f);
    } catch (const usage_error& e) {
      unusable = one_line(e.what());
    }
    const double bits =
        8.0 * static_cast<double>(weights) / static_cast<double>(model.shape.num_parameters);
    for (const kv::dtype d : dtypes) {
      if (!unusable.empty()) {
        plans.push_back({{"weights_format", f},
                         {"kv_dtype", std::string(to_string(d))},
                         {"fits", false},
                         {"kv_pages", 0},
                         {"max_sequences", 0},
                         {"reason", unusable}});
        t.add({f, std::string(to_string(d)), "-", "-", "-", "-", "-", "0", "0", "does not fit"});
        continue;
      }
      sim::config c;
      c.model_override = model.shape;
      c.gpu_memory = gpu_memory - reserve;  // the budget's headroom adds the reserve back
      c.weight_bytes_override = weights;
      c.weights_label = f;  // named in the reason when it does not fit
      c.kv_dtype = d;
      c.max_len = context;
      c.page_size = o.page_size;
      c.max_batched_tokens = o.max_batched_tokens;
      c.max_num_seqs = o.max_num_seqs;
      c.num_requests = 1;
      json row{{"weights_format", f},
               {"kv_dtype", std::string(to_string(d))},
               {"bits_per_weight", bits},
               {"weight_bytes", weights}};
      try {
        const sim::memory_budget b = sim::budget(c);
        // Per layer: a sliding-window layer holds at most its window's pages (plus one) of a
        // sequence, so a sequence costs kv_bytes_per_sequence, not pages x page_bytes.
        const std::size_t pages_per_sequence = (context + o.page_size - 1) / o.page_size;
        const std::size_t sequences = b.kv_bytes / b.kv_bytes_per_sequence;
        row.update({{"fits", true},
                    {"weights_held_bytes", b.weights_held_bytes},
                    {"workspace_bytes", b.workspace_bytes},
                    {"kv_bytes", b.kv_bytes},
                    {"headroom_bytes", b.headroom_bytes + reserve},
                    {"kv_pages", b.kv_pages},
                    {"page_bytes", b.page_bytes},
                    {"kv_bytes_per_token", b.kv_bytes_per_token},
                    {"kv_bytes_per_sequence", b.kv_bytes_per_sequence},
                    {"kv_tokens", std::size_t{b.kv_pages} * o.page_size},
                    {"pages_per_sequence", pages_per_sequence},
                    {"max_sequences", sequences}});
        t.add({f, std::string(to_string(d)), strf("%.2f", bits), format_bytes(b.weights_held_bytes),
               format_bytes(b.workspace_bytes), format_bytes(b.kv_bytes),
               format_bytes(b.headroom_bytes + reserve), std::to_string(b.kv_pages),
               std::to_string(std::size_t{b.kv_pages} * o.page_size), std::to_string(sequences)});
      } catch (const invalid_argument& e) {
        // This format does not fit; the others are still planned.
        row.update({{"fits", false},
                    {"kv_pages", 0},
                    {"max_sequences", 0},
                    {"reason", one_line(e.what())}});
        t.add({f, std::string(to_string(d)), strf("%.2f", bits), format_bytes(weights), "-", "-",
               "-", "0", "0", "does not fit"});
      }
      plans.push_back(std::move(row));
    }
  }
  out["plans"] = std::move(plans);
  if (o.json) {
    print_json(out);
    return;
  }
  const sim::model_shape& shape = model.shape;
  const std::string active = shape.num_experts != 0
                                 ? strf(", %.2f B active per token (%u of %u experts)",
                                        static_cast<double>(shape.active_parameters()) / 1e9,
                                        shape.experts_per_token, shape.num_experts)
                                 : std::string();
  std::printf("%s (%.2f B parameters%s, %s) on %s: context %u tokens, pages of %u tokens\n",
              std::string(shape.name).c_str(), static_cast<double>(shape.num_parameters) / 1e9,
              active.c_str(), model.preset ? "preset" : model.source.c_str(),
              format_bytes(gpu_memory).c_str(), context, o.page_size);
  if (shape.window_layers != 0)
    std::printf(
        "%u of %u layers attend to a window of %u tokens: they hold at most %u pages of "
        "a sequence\n",
        shape.window_layers, shape.num_layers, shape.sliding_window,
        (shape.sliding_window + o.page_size - 1) / o.page_size + 1);
  std::printf("\n");
  std::fputs(t.str().c_str(), stdout);
  std::printf(
      "\nweights + workspace + KV pages + headroom = %s. Workspace: activations of %u "
      "tokens and logits of %u sequences.\n",
      format_bytes(gpu_memory).c_str(), o.max_batched_tokens,
      std::min(o.max_num_seqs, o.max_batched_tokens));
  for (const json& row : out["plans"])
    if (!row["fits"].get<bool>())
      std::printf("%s / %s: %s\n", row["weights_format"].get<std::string>().c_str(),
                  row["kv_dtype"].get<std::string>().c_str(),
                  row["reason"].get<std::string>().c_str());
}

}  // namespace

void add_plan_command(CLI::App& app) {
  auto o = std::make_shared<plan_options>();
  CLI::App* cmd = app.add_subcommand(
      "plan",
      "The memory budget of a model on a GPU: weights, workspace, KV pages, headroom, "
      "and the sequences that fit, per weight format and KV type");
  cmd->add_option("--model,-m", o->model,
                  "A preset (" + preset_names() + ") or a Hugging Face config.json")
      ->capture_default_str();
  cmd->add_option("--gpu-memory,-g", o->gpu_memory, "GPU memory, e.g. 80GiB, 24GB")
      ->capture_default_str();
  cmd->add_option("--weights-format,-w", o->weights_formats,
                  "Weight format(s), repeat or comma-separate: fp16, bf16, fp8, int8, int4 or a "
                  "quantization format (int4_g64, nvfp4, mxfp4, ...); default fp16")
      ->type_name("FORMAT");
  cmd->add_option("--kv-dtype,-k", o->kv_dtypes,
                  "KV cache type(s), repeat or comma-separate: fp16, bf16, fp8, fp8_e5m2, int8; "
                  "default fp16")
      ->type_name("TYPE");
  cmd->add_option("--headroom", o->headroom,
                  "Memory kept out of the budget for what the plan does not model (the CUDA "
                  "context, library workspaces, other processes); 0 for none")
      ->capture_default_str();
  cmd->add_option("--context,-c", o->context,
                  "Tokens per sequence (prompt + output); default min(4096, the model's)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--page-size", o->page_size, "Tokens per KV page")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-batched-tokens", o->max_batched_tokens,
                  "Tokens per step, which sizes the activation workspace")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-num-seqs", o->max_num_seqs,
                  "Sequences per step, whose logits the workspace holds")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--json", o->json, "Print every figure as JSON on stdout");
  cmd->callback([o] { run_plan(*o); });
}

}  // namespace frugal::cli
