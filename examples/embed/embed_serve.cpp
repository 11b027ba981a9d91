// embed_serve: sentence embeddings from a BERT encoder (all-MiniLM-L6-v2 and its kind), one per
// input line, with dynamic batching through a batch::workspace; --compare and --choose judge
// quantized weights by the embeddings they produce. See docs/embed.md.
//   embed_serve --model ~/.cache/frugal/models/all-minilm-l6-v2 --input sentences.txt --json
//   embed_serve --model DIR --input FILE --compare int8_channel,nvfp4
//   embed_serve --model DIR --input FILE --choose --min-cosine 0.99
#include "bert.hpp"
#include "serve.hpp"
#include "tokenizer.hpp"

#include <frugal/error.hpp>
#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/pool.hpp>
#include <frugal/quant/format.hpp>
#include <frugal/quant/model_choice.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

namespace {

namespace fq = frugal::quant;
using json = nlohmann::json;

// The formats --choose tries unless --candidates names others.
const std::string default_candidates =
    "int8_channel,int8_g128,fp8_e4m3,mxfp8,q8_0,int4_g64_asym,nvfp4,nf4,mxfp4,q4_0";

std::vector<std::string> read_lines(const std::string& input) {
  std::ifstream file;
  if (input != "-") {
    file.open(input);
    if (!file) FRUGAL_FAIL_AT(input, "cannot open the input file", frugal::error);
  }
  std::istream& in = input == "-" ? std::cin : file;
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(std::move(line));
  return lines;
}

std::size_t max_length_of(const std::filesystem::path& dir) {
  // sentence-transformers' own limit when present (256 for all-MiniLM-L6-v2), else BERT's 512.
  std::ifstream in(dir / "sentence_bert_config.json");
  if (!in) return 512;
  try {
    const json j = json::parse(in);
    if (j.contains("max_seq_length") && j["max_seq_length"].is_number_unsigned() &&
        j["max_seq_length"].get<std::size_t>() > 0)
      return j["max_seq_length"].get<std::size_t>();
  } catch (const json::exception& e) {
    FRUGAL_FAIL_AT((dir / "sentence_bert_config.json").string(),
                   std::string("not valid JSON: ") + e.what(), frugal::error);
  }
  return 512;
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

json summary_json(const embed::run_summary& s, const embed::bert_model& model,
                  const embed::batching_options& opts, const std::string& format) {
  return {{"sentences", s.sentences},
          {"tokens", s.tokens},
          {"computed_tokens", s.computed_tokens},
          {"batches", s.batches},
          {"batching", opts.padded ? "padded" : "dynamic"},
          {"max_batch_tokens", opts.max_batch_tokens},
          {"max_batch_sequences", opts.max_batch_sequences},
          {"threads", opts.threads},
          {"format", format},
          {"weight_bytes", model.weight_bytes()},
          {"kept_float32", model.kept_float()},
          {"peak_workspace_bytes", s.peak_workspace_bytes},
          {"padded_workspace_bytes", s.padded_workspace_bytes},
          {"seconds", s.seconds},
          {"sentences_per_second", s.seconds > 0 ? s.sentences / s.seconds : 0.0}};
}

void print_summary(std::ostream& os, const json& s) {
  os << "# " << s["sentences"] << " sentences, " << s["tokens"] << " tokens ("
     << s["computed_tokens"] << " computed) in " << s["batches"] << " "
     << s["batching"].get<std::string>() << " batches, " << s["threads"] << " thread(s), "
     << s["format"].get<std::string>() << " weights (" << s["weight_bytes"] << " bytes)\n"
     << "# peak workspace " << s["peak_workspace_bytes"] << " bytes vs "
     << s["padded_workspace_bytes"] << " bytes padded to max_seq_length x max batch\n"
     << "# " << fixed(s["seconds"].get<double>(), 3) << " s, "
     << fixed(s["sentences_per_second"].get<double>(), 1) << " sentences/s\n";
  for (const auto& k : s["kept_float32"]) os << "# kept float32: " << k.get<std::string>() << "\n";
}

double bits_per_weight(const embed::bert_model& m) {
  return 8.0 * static_cast<double>(m.projection_bytes()) /
         static_cast<double>(m.projection_elements());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"embed_serve: sentence embeddings from a BERT encoder, one per input line"};
  std::string model_dir, input = "-", format_name, compare_list;
  bool as_json = false, tokenize_only = false, choose = false, bench = false;
  double min_cosine = 0.99;
  std::string choose_list;
  embed::batching_options opts;
  std::size_t max_length = 0;
  app.add_option("--model", model_dir,
                 "extracted model folder (config.json, model.safetensors, "
                 "tokenizer.json)")
      ->required();
  app.add_option("--input", input, "sentences, one per line ('-': stdin)");
  app.add_flag("--json", as_json, "print JSON instead of text");
  app.add_option("--format", format_name, "quantize every 2-D projection to this format at load");
  app.add_option("--threads", opts.threads, "worker threads")->check(CLI::Range(1u, 256u));
  app.add_option("--max-batch-tokens", opts.max_batch_tokens, "token budget of a dynamic batch")
      ->check(CLI::PositiveNumber);
  app.add_option("--max-batch", opts.max_batch_sequences, "sequences per batch")
      ->check(CLI::PositiveNumber);
  app.add_flag("--padded", opts.padded,
               "fixed batches of --max-batch, padded to their longest (the baseline)");
  app.add_option("--max-length", max_length,
                 "truncate to this many tokens (default: sentence_bert_config.json, else 512)");
  app.add_flag("--tokenize", tokenize_only, "print the token ids of each line and stop");
  app.add_option("--compare", compare_list,
                 "compare these formats (comma-separated) with float32 weights");
  app.add_flag("--choose", choose, "choose the lowest-bit formats that keep the embeddings");
  app.add_option("--min-cosine", min_cosine, "--choose: the mean cosine bound (min: C - 0.02)")
      ->check(CLI::Range(-1.0, 1.0));
  app.add_option("--candidates", choose_list, "--choose: formats to try (comma-separated)");
  app.add_flag("--bench", bench, "embed the input with dynamic and padded batches; print both");
  CLI11_PARSE(app, argc, argv);

  try {
    const std::filesystem::path dir = model_dir;
    if (max_length == 0) max_length = max_length_of(dir);
    const auto tok = embed::wordpiece_tokenizer::from_file(dir / "tokenizer.json", max_length);
    const std::vector<std::string> lines = read_lines(input);
    std::vector<std::vector<std::int32_t>> requests;
    requests.reserve(lines.size());
    for (std::size_t i = 0; i < lines.size(); ++i) {
      try {
        requests.push_back(tok.encode(lines[i]));
      } catch (const frugal::invalid_argument& e) {
        FRUGAL_FAIL_AT("input line " + std::to_string(i + 1), e.what(), frugal::invalid_argument);
      }
    }
    if (tokenize_only) {
      for (const auto& ids : requests) std::cout << json(ids).dump() << "\n";
      return 0;
    }

    frugal::pool_resource weights{frugal::host_resource{}, {.chunk_size = std::size_t{16} << 20}};
    std::optional<fq::format> format;
    if (!format_name.empty() && format_name != "float32") format = fq::parse_format(format_name);
    const embed::bert_model model(dir, weights, embed::uniform_plan(format));
    max_length = std::min(max_length, model.config().max_positions);

    embed::run_summary summary;
    const auto vectors = embed::embed_all(model, requests, opts, max_length, summary);
    const json sum = summary_json(summary, model, opts, format ? format_name : "float32");

    if (bench) {
      embed::batching_options padded = opts;
      padded.padded = true;
      embed::run_summary ps;
      (void)embed::embed_all(model, requests, padded, max_length, ps);
      const json psum = summary_json(ps, model, padded, format ? format_name : "float32");
      if (as_json) {
        std::cout << json{{"bench", {{"dynamic", sum}, {"padded", psum}}}}.dump(2) << "\n";
      } else {
        print_summary(std::cout, sum);
        print_summary(std::cout, psum);
      }
      return 0;
    }

    const auto parse_list = [](const std::string& list) {
      std::vector<fq::format> out;
      std::stringstream ss(list);
      for (std::string name; std::getline(ss, name, ',');)
        if (!name.empty()) out.push_back(fq::parse_format(name));
      return out;
    };
    const auto embed_with = [&](const embed::weight_plan& plan, std::size_t* bytes, double* bits) {
      const embed::bert_model m(dir, weights, plan);
      embed::run_summary s;
      auto v = embed::embed_all(m, requests, opts, max_length, s);
      if (bytes != nullptr) *bytes = m.weight_bytes();
      if (bits != nullptr) *bits = bits_per_weight(m);
      return v;
    };

    if (!compare_list.empty()) {
      json table = json::object();
      for (fq::format f : parse_list(compare_list)) {
        std::size_t bytes = 0;
        double bits = 0;
        const auto q = embed_with(embed::uniform_plan(f), &bytes, &bits);
        const auto g = embed::compare_embeddings(vectors, q);
        table[std::string(fq::to_string(f))] = {
            {"mean_cosine", g.mean_cosine}, {"min_cosine", g.min_cosine},
            {"spearman", g.spearman},       {"nn_agreement", g.nn_agreement},
            {"weight_bytes", bytes},        {"bits_per_weight", bits}};
      }
      if (as_json) {
        std::cout << json{{"compare", table}, {"summary", sum}}.dump(2) << "\n";
      } else {
        std::cout << "| format | bits/weight | weight bytes | mean cosine | min cosine | "
                     "spearman | top-1 NN agreement |\n|---|---|---|---|---|---|---|\n";
        std::cout << "| float32 | " << fixed(bits_per_weight(model), 2) << " | "
                  << model.weight_bytes() << " | 1 | 1 | 1 | 1 |\n";
        for (fq::format f : parse_list(compare_list)) {
          const auto& r = table[std::string(fq::to_string(f))];
          std::cout << "| " << fq::to_string(f) << " | "
                    << fixed(r["bits_per_weight"].get<double>(), 2) << " | " << r["weight_bytes"]
                    << " | " << fixed(r["mean_cosine"].get<double>(), 6) << " | "
                    << fixed(r["min_cosine"].get<double>(), 6) << " | "
                    << fixed(r["spearman"].get<double>(), 6) << " | "
                    << fixed(r["nn_agreement"].get<double>(), 3) << " |\n";
        }
      }
      return 0;
    }

    if (choose) {
      const std::vector<fq::format> candidates =
          parse_list(choose_list.empty() ? default_candidates : choose_list);
      const auto& c = model.config();
      std::vector<fq::matrix_group> groups;
      const std::array<std::pair<std::size_t, std::size_t>, embed::matrix_kind_count> shapes{
          {{c.hidden, c.hidden},
           {c.hidden, c.hidden},
           {c.hidden, c.hidden},
           {c.hidden, c.hidden},
           {c.intermediate, c.hidden},
           {c.hidden, c.intermediate}}};
      for (std::size_t k = 0; k < embed::matrix_kind_count; ++k)
        groups.push_back({std::string(embed::to_string(static_cast<embed::matrix_kind>(k))),
                          shapes[k].first, shapes[k].second, c.layers});
      const auto metric = [&](const fq::format_assignment& a) {
        embed::weight_plan plan;
        for (std::size_t k = 0; k < plan.size(); ++k) plan[k] = a[k];
        const auto g = embed::compare_embeddings(vectors, embed_with(plan, nullptr, nullptr));
        return fq::metric_verdict{
            .accepted = g.mean_cosine >= min_cosine && g.min_cosine >= min_cosine - 0.02,
            .score = g.mean_cosine,
            .detail = "min cosine " + fixed(g.min_cosine, 6)};
      };
      const auto choice = fq::choose_by_metric(groups, candidates, metric);
      const auto name = [](const std::optional<fq::format>& f) {
        return f ? std::string(fq::to_string(*f)) : std::string("float32");
      };
      json per_kind = json::object();
      for (std::size_t g = 0; g < groups.size(); ++g)
        per_kind[groups[g].name] = name(choice.per_group[g]);
      json trials = json::array();
      for (const auto& t : choice.trials) {
        json formats = json::array();
        for (const auto& f : t.formats) formats.push_back(name(f));
        trials.push_back({{"formats", formats},
                          {"projection_bytes", t.bytes},
                          {"mean_cosine", t.verdict.score},
                          {"detail", t.verdict.detail},
                          {"accepted", t.verdict.accepted}});
      }
      const json result{{"min_cosine", min_cosine},
                        {"whole_model", name(choice.uniform_format)},
                        {"whole_model_projection_bytes", choice.uniform_bytes},
                        {"per_kind", per_kind},
                        {"per_kind_projection_bytes", choice.per_group_bytes},
                        {"float32_projection_bytes", choice.source_bytes},
                        {"trials", trials}};
      if (as_json) {
        std::cout << json{{"choose", result}}.dump(2) << "\n";
      } else {
        std::cout << "mean cosine >= " << min_cosine << ", min cosine >= " << min_cosine - 0.02
                  << "\nwhole model: " << result["whole_model"].get<std::string>() << " ("
                  << choice.uniform_bytes << " projection bytes of " << choice.source_bytes
                  << " float32)\nper kind:";
        for (const auto& [kind, f] : per_kind.items())
          std::cout << " " << kind << "=" << f.get<std::string>();
        std::cout << " (" << choice.per_group_bytes << " projection bytes)\n"
                  << choice.trials.size() << " plans tried\n";
      }
      return 0;
    }

    if (as_json) {
      std::cout << json{{"embeddings", vectors}, {"summary", sum}}.dump() << "\n";
    } else {
      for (const auto& v : vectors) {
        for (std::size_t i = 0; i < v.size(); ++i) std::cout << (i ? " " : "") << v[i];
        std::cout << "\n";
      }
      std::cout.flush();  // the embeddings before the summary where both go to one terminal
      print_summary(std::cerr, sum);
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "embed_serve: " << e.what() << "\n";
    return 1;
  }
}
