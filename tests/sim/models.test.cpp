// Model shapes: the presets against their published parameter counts, KV bytes per token and per
// sequence computed by hand, and config.json files of each supported type read into shapes.
#include <frugal/sim/models.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <string>

using frugal::kv::dtype;
using frugal::sim::find_model;
using frugal::sim::model_shape;
using frugal::sim::parse_hf_config;

namespace {

/// Within 0.5% of a published count (model cards round to three significant figures).
bool near(std::uint64_t got, double published) {
  return std::fabs(static_cast<double>(got) - published) <= 0.005 * published;
}

/// The message parse_hf_config throws for `json`, or "" when it accepts it.
std::string refusal(const std::string& json) {
  try {
    (void)parse_hf_config(json, "config.json");
  } catch (const frugal::error& e) {
    return e.what();
  }
  return "";
}

// Published config.json files, the fields that matter (values as Hugging Face serves them).
const std::string mixtral = R"({"_name_or_path": "mistralai/Mixtral-8x7B-v0.1",
  "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 4096,
  "intermediate_size": 14336, "max_position_embeddings": 32768, "num_attention_heads": 32,
  "num_experts_per_tok": 2, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "num_local_experts": 8, "output_router_logits": false, "rms_norm_eps": 1e-05,
  "rope_theta": 1000000.0, "router_aux_loss_coef": 0.02, "sliding_window": null,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "vocab_size": 32000})";
const std::string qwen25_72b = R"({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
  "hidden_size": 8192, "intermediate_size": 29568, "max_position_embeddings": 131072,
  "max_window_layers": 80, "num_attention_heads": 64, "num_hidden_layers": 80,
  "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
  "sliding_window": 131072, "tie_word_embeddings": false, "use_sliding_window": false,
  "vocab_size": 152064})";
// Gemma-2-9B's config.json has no tie_word_embeddings: Gemma2Config ties by default.
const std::string gemma2_9b = R"({"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2",
  "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "head_dim": 256,
  "hidden_act": "gelu_pytorch_tanh", "hidden_size": 3584, "intermediate_size": 14336,
  "max_position_embeddings": 8192, "num_attention_heads": 16, "num_hidden_layers": 42,
  "num_key_value_heads": 8, "query_pre_attn_scalar": 256, "sliding_window": 4096,
  "vocab_size": 256000})";
const std::string mistral_v01 = R"({"architectures": ["MistralForCausalLM"],
  "model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336,
  "max_position_embeddings": 32768, "num_attention_heads": 32, "num_hidden_layers": 32,
  "num_key_value_heads": 8, "rope_theta": 10000.0, "sliding_window": 4096,
  "tie_word_embeddings": false, "vocab_size": 32000})";
const std::string deepseek_v2_lite = R"({"architectures": ["DeepseekV2ForCausalLM"],
  "model_type": "deepseek_v2", "aux_loss_alpha": 0.001, "ep_size": 1,
  "first_k_dense_replace": 1, "hidden_size": 2048, "intermediate_size": 10944,
  "kv_lora_rank": 512, "max_position_embeddings": 163840, "moe_intermediate_size": 1408,
  "moe_layer_freq": 1, "n_group": 1, "n_routed_experts": 64, "n_shared_experts": 2,
  "norm_topk_prob": false, "num_attention_heads": 16, "num_experts_per_tok": 6,
  "num_hidden_layers": 27, "num_key_value_heads": 16, "q_lora_rank": null,
  "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "routed_scaling_factor": 1.0,
  "scoring_func": "softmax", "seq_aux": true, "tie_word_embeddings": false,
  "topk_group": 1, "topk_method": "greedy", "v_head_dim": 128, "vocab_size": 102400})";

}  // namespace

TEST_CASE("sim::models: presets add up to their shapes and to the published counts") {
  for (const model_shape& m : frugal::sim::model_presets) {
    INFO(m.name);
    CHECK(m.parameters_from_shape() == m.num_parameters);
    CHECK(m.active_parameters() <= m.num_parameters);
    CHECK((m.num_experts == 0) == (m.active_parameters() == m.num_parameters));
  }
  // Model cards and papers.
  CHECK(near(find_model("mixtral-8x7b").num_parameters, 46.7e9));
  CHECK(near(find_model("mixtral-8x7b").active_parameters(), 12.9e9));  // "12.9B active"
  CHECK(near(find_model("qwen2.5-72b").num_parameters, 72.7e9));
  CHECK(near(find_model("gemma-2-9b").num_parameters, 9.24e9));
  CHECK(near(find_model("mistral-7b").num_parameters, 7.24e9));
  CHECK(near(find_model("deepseek-v2-lite").num_parameters, 15.7e9));
  CHECK(near(find_model("llama-3-8b").num_parameters, 8.03e9));
  CHECK(near(find_model("qwen2.5-7b").num_parameters, 7.62e9));
}

TEST_CASE("sim::models: KV bytes per token and per sequence, by hand") {
  // 2 (K, V) x layers x KV heads x head_dim x 2 bytes.
  CHECK(find_model("mixtral-8x7b").kv_bytes_per_token(dtype::fp16) == 2 * 32 * 8 * 128 * 2);
  CHECK(find_model("qwen2.5-72b").kv_bytes_per_token(dtype::fp16) == 2 * 80 * 8 * 128 * 2);
  CHECK(find_model("gemma-2-9b").kv_bytes_per_token(dtype::fp16) == 2 * 42 * 8 * 256 * 2);
  CHECK(find_model("mistral-7b").kv_bytes_per_token(dtype::fp16) == 131072);
  CHECK(find_model("mistral-7b").kv_bytes_per_token(dtype::fp8_e4m3) == 65536);
  // MLA caches the 512-element latent and the 64-element rotary key per layer: 27 x 576 x 2.
  const model_shape& ds = find_model("deepseek-v2-lite");
  CHECK(ds.kv_bytes_per_token(dtype::fp16) == 27 * 576 * 2);
  CHECK(ds.kv_layout(dtype::fp16, 16).page_bytes() == 16 * ds.kv_bytes_per_token(dtype::fp16));

  // Mistral-7B at 32,768 tokens: every layer holds its 4096-token window plus a page of 16,
  // 32 x 4112 x (2 x 8 x 128 x 2), not 32,768 tokens' worth (4 GiB).
  const model_shape& mistral = find_model("mistral-7b");
  CHECK(mistral.kv_bytes_per_sequence(dtype::fp16, 32768, 16) == 32ull * 4112 * 4096);
  CHECK(mistral.kv_bytes_per_sequence(dtype::fp16, 32768, 1) == 32ull * 4097 * 4096);
  // Below the window every token is held in every layer.
  CHECK(mistral.kv_bytes_per_sequence(dtype::fp16, 4096, 16) == 4096ull * 131072);
  // Gemma-2-9B at 8192: 21 global layers hold 8192 tokens, 21 windowed ones 4096 + 16; each
  // layer-token is 2 x 8 x 256 x 2 = 8192 bytes.
  CHECK(find_model("gemma-2-9b").kv_bytes_per_sequence(dtype::fp16, 8192, 16) ==
        (21ull * 8192 + 21ull * 4112) * 8192);
  // No window: tokens rounded up to pages, all layers.
  CHECK(find_model("llama-3-8b").kv_bytes_per_sequence(dtype::fp16, 100, 16) == 112ull * 131072);
}

TEST_CASE("sim::models: config.json files of each type read as their presets") {
  const auto same = [](const model_shape& got, const model_shape& preset) {
    INFO(preset.name);
    CHECK(got.num_parameters == preset.num_parameters);
    CHECK(got.active_parameters() == preset.active_parameters());
    CHECK(got.kv_bytes_per_token(dtype::fp16) == preset.kv_bytes_per_token(dtype::fp16));
    CHECK(got.kv_bytes_per_sequence(dtype::fp16, 32768, 16) ==
          preset.kv_bytes_per_sequence(dtype::fp16, 32768, 16));
    CHECK(got.tied_embeddings == preset.tied_embeddings);
    CHECK(got.sliding_window == preset.sliding_window);
    CHECK(got.window_layers == preset.window_layers);
  };
  const model_shape m = parse_hf_config(mixtral, "config.json");
  same(m, find_model("mixtral-8x7b"));
  CHECK(m.name == "mistralai/Mixtral-8x7B-v0.1");  // _name_or_path
  CHECK(m.num_experts == 8);
  CHECK(m.experts_per_token == 2);
  same(parse_hf_config(qwen25_72b, "config.json"), find_model("qwen2.5-72b"));
  const model_shape g = parse_hf_config(gemma2_9b, "config.json");
  same(g, find_model("gemma-2-9b"));
  CHECK(g.name == "gemma2");  // no _name_or_path: the model type
  same(parse_hf_config(mistral_v01, "config.json"), find_model("mistral-7b"));
  same(parse_hf_config(deepseek_v2_lite, "config.json"), find_model("deepseek-v2-lite"));
}

TEST_CASE("sim::models: tie_word_embeddings defaults to the model type's config class") {
  std::string untied = gemma2_9b;
  untied.insert(1, R"("tie_word_embeddings": false, )");
  CHECK(parse_hf_config(untied, "c").num_parameters ==
        find_model("gemma-2-9b").num_parameters + 256000ull * 3584);
  // Llama's class does not tie.
  const std::string llama = R"({"model_type": "llama", "hidden_size": 4096,
    "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192})";
  CHECK(parse_hf_config(llama, "c").num_parameters == find_model("llama-3-8b").num_parameters);
}

TEST_CASE("sim::models: head_dim sizes q and o as well as the KV (Qwen3)") {
  // Qwen/Qwen3-0.6B: 16 heads of 128 on a hidden size of 1024, q/k norms, tied; 0.6B
  // parameters of which 0.44B are not embeddings (its model card).
  const std::string qwen3 = R"({"model_type": "qwen3", "head_dim": 128, "hidden_size": 1024,
    "intermediate_size": 3072, "max_position_embeddings": 40960, "num_attention_heads": 16,
    "num_hidden_layers": 28, "num_key_value_heads": 8, "tie_word_embeddings": true,
    "use_sliding_window": false, "sliding_window": null, "max_window_layers": 28,
    "vocab_size": 151936})";
  const model_shape q = parse_hf_config(qwen3, "c");
  CHECK(q.head_dim == 128);
  // q: 1024 x 2048, k, v: 1024 x 1024, o: 2048 x 1024, q/k norms 2 x 128, MLP 3 x 1024 x 3072,
  // 2 norms; embeddings 151936 x 1024 once; a final norm.
  const std::uint64_t layer =
      1024ull * 2048 * 2 + 2ull * 1024 * 1024 + 256 + 3ull * 1024 * 3072 + 2 * 1024;
  CHECK(q.num_parameters == 28 * layer + 151936ull * 1024 + 1024);
  CHECK(near(q.num_parameters - 151936ull * 1024, 0.44e9));
  CHECK(q.kv_bytes_per_token(dtype::fp16) == 2 * 28 * 8 * 128 * 2);
}

TEST_CASE("sim::models: MoE configs of Qwen's and DeepSeek's kinds count every expert") {
  // Qwen/Qwen1.5-MoE-A2.7B: 60 experts of 1408, 4 per token, a shared expert of 5632 with its
  // gate; 14.3B parameters, 2.7B active (model card).
  const std::string qwen2_moe = R"({"model_type": "qwen2_moe", "decoder_sparse_step": 1,
    "hidden_size": 2048, "intermediate_size": 5632, "max_position_embeddings": 8192,
    "moe_intermediate_size": 1408, "mlp_only_layers": [], "num_attention_heads": 16,
    "num_experts": 60, "num_experts_per_tok": 4, "num_hidden_layers": 24,
    "num_key_value_heads": 16, "shared_expert_intermediate_size": 5632,
    "tie_word_embeddings": false, "vocab_size": 151936})";
  const model_shape q = parse_hf_config(qwen2_moe, "c");
  CHECK(near(q.num_parameters, 14.3e9));
  CHECK(q.num_moe_layers == 24);
  CHECK(q.shared_expert_gate);
  // Qwen/Qwen3-30B-A3B: 128 experts of 768, 8 per token; 30.5B parameters (model card).
  const std::string qwen3_moe = R"({"model_type": "qwen3_moe", "decoder_sparse_step": 1,
    "head_dim": 128, "hidden_size": 2048, "intermediate_size": 6144,
    "max_position_embeddings": 40960, "mlp_only_layers": [], "moe_intermediate_size": 768,
    "num_attention_heads": 32, "num_experts": 128, "num_experts_per_tok": 8,
    "num_hidden_layers": 48, "num_key_value_heads": 4, "tie_word_embeddings": false,
    "vocab_size": 151936})";
  const model_shape q3 = parse_hf_config(qwen3_moe, "c");
  CHECK(near(q3.num_parameters, 30.5e9));
  // 8 of 128 experts: the MoE layers' expert weights shrink 16-fold.
  CHECK(q3.active_parameters() == q3.num_parameters - 48ull * (128 - 8) * 3 * 2048 * 768);
  // deepseek-ai/DeepSeek-V3: q through a 1536 LoRA, 256 experts of 2048, 8 per token, one
  // shared, three dense layers, a score bias per expert; 671B parameters in the main model
  // (the multi-token-prediction module, 14B more, is not loaded by transformers), 37B active.
  const std::string v3 = R"({"model_type": "deepseek_v3", "hidden_size": 7168,
    "intermediate_size": 18432, "moe_intermediate_size": 2048, "num_hidden_layers": 61,
    "num_attention_heads": 128, "num_key_value_heads": 128, "kv_lora_rank": 512,
    "q_lora_rank": 1536, "qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "v_head_dim": 128,
    "n_routed_experts": 256, "n_shared_experts": 1, "first_k_dense_replace": 3,
    "moe_layer_freq": 1, "num_experts_per_tok": 8, "topk_method": "noaux_tc",
    "vocab_size": 129280, "max_position_embeddings": 163840, "tie_word_embeddings": false,
    "num_nextn_predict_layers": 1})";
  const model_shape d3 = parse_hf_config(v3, "c");
  CHECK(near(d3.num_parameters, 671e9));
  CHECK(d3.num_moe_layers == 58);
  CHECK(d3.router_bias);
  CHECK(std::fabs(static_cast<double>(d3.active_parameters()) - 37e9) < 1e9);
  CHECK(d3.kv_bytes_per_token(dtype::fp16) == 61 * 576 * 2);
  // DeepSeek-V2-Lite: the first layer dense, 26 with experts.
  const model_shape ds = parse_hf_config(deepseek_v2_lite, "c");
  CHECK(ds.num_moe_layers == 26);
  CHECK(ds.shared_intermediate_size == 2 * 1408);
}

TEST_CASE("sim::models: sliding windows as each type places them") {
  // Qwen2 with use_sliding_window: the layers from max_window_layers on.
  std::string qwen = qwen25_72b;
  qwen.replace(qwen.find(R"("use_sliding_window": false)"), 27, R"("use_sliding_window": true )");
  qwen.replace(qwen.find(R"("max_window_layers": 80)"), 23, R"("max_window_layers": 60)");
  const model_shape q = parse_hf_config(qwen, "c");
  CHECK(q.window_layers == 20);
  CHECK(q.sliding_window == 131072);
  // Gemma-3: 5 of every 6 layers windowed (sliding_window_pattern 6), or as layer_types says.
  const std::string gemma3 = R"({"model_type": "gemma3_text", "head_dim": 256,
    "hidden_size": 2560, "intermediate_size": 10240, "max_position_embeddings": 131072,
    "num_attention_heads": 8, "num_hidden_layers": 34, "num_key_value_heads": 4,
    "sliding_window": 1024, "vocab_size": 262208})";
  const model_shape g3 = parse_hf_config(gemma3, "c");
  CHECK(g3.window_layers == 34 - 5);
  CHECK(g3.tied_embeddings);
  CHECK(g3.qk_norm);
  const std::string typed = R"({"model_type": "llama", "hidden_size": 64,
    "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 3,
    "vocab_size": 100, "max_position_embeddings": 4096, "sliding_window": 512,
    "layer_types": ["sliding_attention", "full_attention", "sliding_attention"]})";
  CHECK(parse_hf_config(typed, "c").window_layers == 2);
  // A layer type frugal does not model is refused, not guessed.
  std::string odd = typed;
  odd.replace(odd.find(R"("full_attention")"), 16, R"("chunked_attention")");
  CHECK(refusal(odd).find("chunked_attention") != std::string::npos);
}

TEST_CASE("sim::models: encoders, unknown types and unread expert fields are refused") {
  // sentence-transformers/all-MiniLM-L6-v2: a BERT encoder.
  const std::string bert = R"({"architectures": ["BertModel"], "model_type": "bert",
    "hidden_size": 384, "intermediate_size": 1536, "max_position_embeddings": 512,
    "num_attention_heads": 12, "num_hidden_layers": 6, "vocab_size": 30522})";
  const std::string why = refusal(bert);
  CHECK(why.find("config.json") != std::string::npos);
  CHECK(why.find("\"bert\"") != std::string::npos);
  CHECK(why.find("llama") != std::string::npos);  // the supported types are listed
  CHECK(why.find("mixtral") != std::string::npos);
  // No model_type at all.
  std::string untyped = mistral_v01;
  untyped.replace(untyped.find(R"("model_type": "mistral",)"), 24, "");
  CHECK(refusal(untyped).find("model_type") != std::string::npos);
  // Experts on a type that has none, or an expert field the type does not define: refused with
  // the field names, never sized as dense.
  std::string llama_moe = mistral_v01;
  llama_moe.insert(1, R"("num_local_experts": 8, "num_experts_per_tok": 2, )");
  const std::string moe_why = refusal(llama_moe);
  CHECK(moe_why.find("num_local_experts") != std::string::npos);
  CHECK(moe_why.find("num_experts_per_tok") != std::string::npos);
  std::string extra = mixtral;
  extra.insert(1, R"("num_shared_experts": 1, )");
  CHECK(refusal(extra).find("num_shared_experts") != std::string::npos);
  // A MoE type without its expert count.
  std::string missing = mixtral;
  missing.replace(missing.find(R"("num_local_experts": 8,)"), 23, "");
  CHECK(refusal(missing).find("num_local_experts") != std::string::npos);
  // More experts per token than experts.
  std::string too_many = mixtral;
  too_many.replace(too_many.find(R"("num_experts_per_tok": 2)"), 24, R"("num_experts_per_tok": 9)");
  CHECK(refusal(too_many).find("num_experts_per_tok") != std::string::npos);
}
