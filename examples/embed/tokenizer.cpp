// The WordPiece tokenizer: normalizer, pre-tokenizer and greedy longest-match-first WordPiece,
// as BERT defines them and Hugging Face's tokenizer.json describes them.
#include "tokenizer.hpp"

#include "unicode.hpp"

#include <frugal/error.hpp>

#include <nlohmann/json.hpp>

#include <fstream>

namespace embed {
namespace {

[[noreturn]] void bad_file(const std::string& name, const std::string& why) {
  FRUGAL_FAIL_AT(name, why, frugal::error);
}

bool is_bert_punctuation(char32_t c) noexcept {
  const bool ascii_punct = (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
                           (c >= 123 && c <= 126);
  return ascii_punct || is_punctuation(c);
}

bool bool_or(const nlohmann::json& j, const char* key, bool fallback, const std::string& name) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean()) bad_file(name, std::string("normalizer.") + key + " is not a boolean");
  return j[key].get<bool>();
}

}  // namespace

wordpiece_tokenizer wordpiece_tokenizer::from_file(const std::filesystem::path& path,
                                                   std::size_t max_length) {
  std::ifstream in(path);
  if (!in) bad_file(path.string(), "cannot open the tokenizer file");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    bad_file(path.string(), std::string("not valid JSON: ") + e.what());
  }
  return from_json(j, max_length, path.string());
}

wordpiece_tokenizer wordpiece_tokenizer::from_json(const nlohmann::json& j, std::size_t max_length,
                                                   const std::string& name) {
  if (!j.is_object()) bad_file(name, "not a JSON object");
  if (max_length < 2) bad_file(name, "max_length must leave room for [CLS] and [SEP]");
  wordpiece_tokenizer t;
  t.max_length_ = max_length;
  try {
    const auto& model = j.at("model");
    if (model.value("type", std::string{}) != "WordPiece")
      bad_file(name, "model.type is not WordPiece (not a BERT tokenizer)");
    const auto& vocab = model.at("vocab");
    if (!vocab.is_object() || vocab.empty())
      bad_file(name, "model.vocab is not a non-empty object");
    for (const auto& [token, id] : vocab.items()) {
      if (!id.is_number_integer() || id.get<std::int64_t>() < 0)
        bad_file(name, "model.vocab[\"" + token + "\"] is not a non-negative integer");
      t.vocab_.emplace(token, id.get<std::int32_t>());
    }
    t.prefix_ = model.value("continuing_subword_prefix", std::string("##"));
    t.max_input_chars_per_word_ = model.value("max_input_chars_per_word", std::size_t{100});
    t.unk_ = t.id_of(model.value("unk_token", std::string("[UNK]")), name);

    const auto& norm = j.at("normalizer");
    if (!norm.is_null()) {
      if (norm.value("type", std::string{}) != "BertNormalizer")
        bad_file(name, "normalizer.type is not BertNormalizer");
      t.normalizer_.clean_text = bool_or(norm, "clean_text", true, name);
      t.normalizer_.handle_chinese_chars = bool_or(norm, "handle_chinese_chars", true, name);
      t.normalizer_.lowercase = bool_or(norm, "lowercase", true, name);
      t.normalizer_.strip_accents = bool_or(norm, "strip_accents", t.normalizer_.lowercase, name);
    } else {
      t.normalizer_ = {false, false, false, false};
    }
    const auto& pre = j.at("pre_tokenizer");
    if (pre.is_null() || pre.value("type", std::string{}) != "BertPreTokenizer")
      bad_file(name, "pre_tokenizer.type is not BertPreTokenizer");

    t.cls_ = t.id_of("[CLS]", name);
    t.sep_ = t.id_of("[SEP]", name);
    if (j.contains("added_tokens")) {
      for (const auto& added : j.at("added_tokens")) {
        // Tokens matched before normalization; the others would need the normalized text.
        if (!added.value("normalized", false))
          t.special_.emplace_back(decode_utf8(added.at("content").get<std::string>()),
                                  added.at("id").get<std::int32_t>());
      }
    }
  } catch (const nlohmann::json::exception& e) {
    bad_file(name, std::string("unexpected tokenizer.json content: ") + e.what());
  } catch (const frugal::invalid_argument& e) {
    bad_file(name, e.what());
  }
  return t;
}

std::int32_t wordpiece_tokenizer::id_of(const std::string& token, const std::string& name) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) bad_file(name, "the vocabulary has no " + token);
  return it->second;
}

std::u32string wordpiece_tokenizer::normalize(std::u32string_view text) const {
  std::u32string out;
  out.reserve(text.size());
  std::u32string scratch;
  for (char32_t c : text) {
    if (normalizer_.clean_text) {
      if (c == 0 || c == 0xFFFD || (is_other(c) && c != '\t' && c != '\n' && c != '\r')) continue;
      if (is_white_space(c)) c = ' ';
    }
    scratch.clear();
    if (normalizer_.strip_accents) {
      append_nfd(c, scratch);
    } else {
      scratch.push_back(c);
    }
    const bool cjk = normalizer_.handle_chinese_chars && is_cjk_ideograph(c);
    if (cjk) out.push_back(' ');
    for (char32_t d : scratch) {
      if (normalizer_.strip_accents && is_mark(d)) continue;
      if (normalizer_.lowercase) {
        append_lowercase(d, out);
      } else {
        out.push_back(d);
      }
    }
    if (cjk) out.push_back(' ');
  }
  return out;
}

std::vector<std::u32string> wordpiece_tokenizer::pre_tokenize(std::u32string_view text) const {
  std::vector<std::u32string> words;
  std::u32string word;
  const auto flush = [&] {
    if (!word.empty()) words.push_back(std::move(word));
    word.clear();
  };
  for (char32_t c : normalize(text)) {
    if (is_white_space(c)) {
      flush();
    } else if (is_bert_punctuation(c)) {
      flush();
      words.emplace_back(1, c);
    } else {
      word.push_back(c);
    }
  }
  flush();
  return words;
}

void wordpiece_tokenizer::word_piece(std::u32string_view word,
                                     std::vector<std::int32_t>& out) const {
  if (word.size() > max_input_chars_per_word_) {
    out.push_back(unk_);
    return;
  }
  const std::size_t first = out.size();
  std::size_t start = 0;
  while (start < word.size()) {
    std::size_t end = word.size();
    bool found = false;
    while (end > start) {
      std::string piece = start > 0 ? prefix_ : std::string{};
      piece += encode_utf8(word.substr(start, end - start));
      if (const auto it = vocab_.find(piece); it != vocab_.end()) {
        out.push_back(it->second);
        found = true;
        break;
      }
      --end;
    }
    if (!found) {  // one piece that matches nothing makes the whole word unknown
      out.resize(first);
      out.push_back(unk_);
      return;
    }
    start = end;
  }
}

std::vector<std::int32_t> wordpiece_tokenizer::encode(std::string_view text) const {
  const std::u32string chars = decode_utf8(text);
  std::vector<std::int32_t> ids{cls_};
  const std::size_t limit = max_length_ - 1;  // room for [SEP]
  std::size_t pos = 0;
  const auto encode_plain = [&](std::u32string_view part) {
    for (const auto& word : pre_tokenize(part)) {
      if (ids.size() >= limit) return;
      word_piece(word, ids);
    }
  };
  // Special tokens ([CLS], [MASK], ...) written in the text are matched before normalization.
  while (pos < chars.size() && ids.size() < limit) {
    std::size_t best = std::u32string::npos, best_len = 0;
    std::int32_t best_id = 0;
    for (const auto& [content, id] : special_) {
      const std::size_t at = chars.find(content, pos);
      if (at != std::u32string::npos && (at < best || (at == best && content.size() > best_len))) {
        best = at, best_len = content.size(), best_id = id;
      }
    }
    if (best == std::u32string::npos) {
      encode_plain(std::u32string_view(chars).substr(pos));
      break;
    }
    encode_plain(std::u32string_view(chars).substr(pos, best - pos));
    if (ids.size() < limit) ids.push_back(best_id);
    pos = best + best_len;
  }
  if (ids.size() > limit) ids.resize(limit);
  ids.push_back(sep_);
  return ids;
}

}  // namespace embed
