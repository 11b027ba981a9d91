// The WordPiece tokenizer on a small vocabulary written here (no model needed); the comparison
// with Hugging Face's tokenizers on the real vocabulary is check_tokenizer.py.
#include "tokenizer.hpp"

#include "unicode.hpp"

#include <frugal/error.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using embed::wordpiece_tokenizer;
using nlohmann::json;

namespace {

json small_tokenizer() {
  const std::vector<std::string> tokens{
      "[PAD]",    "[UNK]",  "[CLS]", "[SEP]", "[MASK]", "hello", "world", "cafe", "naive", "un",
      "##believ", "##able", ",",     "!",     ".",      "東",    "京",    "x",    "##x",   "ii"};
  json vocab = json::object();
  for (std::size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
  json added = json::array();
  for (int i : {0, 1, 2, 3, 4})
    added.push_back({{"id", i}, {"content", tokens[i]}, {"special", true}, {"normalized", false}});
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer",
           {{"type", "BertNormalizer"},
            {"clean_text", true},
            {"handle_chinese_chars", true},
            {"strip_accents", nullptr},
            {"lowercase", true}}},
          {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
          {"model",
           {{"type", "WordPiece"},
            {"unk_token", "[UNK]"},
            {"continuing_subword_prefix", "##"},
            {"max_input_chars_per_word", 12},
            {"vocab", vocab}}}};
}

using ids = std::vector<std::int32_t>;

}  // namespace

TEST_CASE("the tokenizer normalizes, splits punctuation and finds WordPiece pieces", "[embed]") {
  const auto tok = wordpiece_tokenizer::from_json(small_tokenizer(), 32);
  CHECK(tok.encode("Hello, World!") == ids{2, 5, 12, 6, 13, 3});
  CHECK(tok.encode("CAFÉ naïve") == ids{2, 7, 8, 3});         // accents stripped, lowercased
  CHECK(tok.encode("unbelievable") == ids{2, 9, 10, 11, 3});  // un ##believ ##able
  CHECK(tok.encode("unbelievably") == ids{2, 1, 3});          // a piece is missing: [UNK]
  CHECK(tok.encode("東京") == ids{2, 15, 16, 3});             // CJK split per character
  CHECK(tok.encode(std::string(12, 'x')) ==
        ids{2, 17, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 3});
  CHECK(tok.encode(std::string(13, 'x')) == ids{2, 1, 3});  // past max_input_chars_per_word
  CHECK(tok.encode("hello\x07\tworld\xC2\xA0.") == ids{2, 5, 6, 14, 3});  // control dropped
  CHECK(tok.encode("") == ids{2, 3});
  CHECK(tok.encode("[MASK] hello [mask]") == ids{2, 4, 5, 1, 1, 1, 3});  // raw-text match only
  CHECK(tok.encode("\xE2\x85\xB1") == ids{2, 1, 3});  // ⅱ is one character, not "ii"
}

TEST_CASE("the tokenizer truncates to max_length, [CLS] and [SEP] included", "[embed]") {
  const auto tok = wordpiece_tokenizer::from_json(small_tokenizer(), 5);
  CHECK(tok.encode("hello world hello world hello") == ids{2, 5, 6, 5, 3});
  CHECK(tok.encode("unbelievable") == ids{2, 9, 10, 11, 3});
  CHECK(tok.encode("unbelievable hello") == ids{2, 9, 10, 11, 3});
}

TEST_CASE("invalid UTF-8 is refused with the byte offset", "[embed]") {
  const auto tok = wordpiece_tokenizer::from_json(small_tokenizer(), 16);
  for (const std::string& bad : {std::string("ab\xFF"), std::string("\xC0\xAF"),  // overlong
                                 std::string("\xED\xA0\x80"),                     // surrogate
                                 std::string("\xF4\x90\x80\x80"),                 // > U+10FFFF
                                 std::string("ok \xE6\x9D"),                      // truncated
                                 std::string("\x80")}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(tok.encode(bad), frugal::invalid_argument);
  }
  CHECK_THROWS_WITH(tok.encode("ab\xFF"), Catch::Contains("invalid UTF-8 at byte 2"));
  CHECK(embed::encode_utf8(embed::decode_utf8("é東😀")) == "é東😀");
}

TEST_CASE("a tokenizer.json that is missing, malformed or not BERT WordPiece is refused",
          "[embed]") {
  const auto dir = std::filesystem::temp_directory_path() / "frugal_embed_tokenizer_test";
  std::filesystem::create_directories(dir);
  const auto path = dir / "tokenizer.json";
  std::filesystem::remove(path);
  CHECK_THROWS_WITH(wordpiece_tokenizer::from_file(path, 16), Catch::Contains("cannot open"));
  std::ofstream(path) << "{\"model\": ";
  CHECK_THROWS_WITH(wordpiece_tokenizer::from_file(path, 16), Catch::Contains("not valid JSON"));
  std::filesystem::remove_all(dir);

  auto j = small_tokenizer();
  j["model"]["type"] = "BPE";
  CHECK_THROWS_WITH(wordpiece_tokenizer::from_json(j, 16), Catch::Contains("not WordPiece"));
  j = small_tokenizer();
  j["model"]["vocab"].erase("[SEP]");
  CHECK_THROWS_WITH(wordpiece_tokenizer::from_json(j, 16), Catch::Contains("no [SEP]"));
  j = small_tokenizer();
  j["normalizer"]["type"] = "NFKC";
  CHECK_THROWS_WITH(wordpiece_tokenizer::from_json(j, 16), Catch::Contains("BertNormalizer"));
  j = small_tokenizer();
  j["pre_tokenizer"] = {{"type", "Metaspace"}};
  CHECK_THROWS_WITH(wordpiece_tokenizer::from_json(j, 16), Catch::Contains("BertPreTokenizer"));
  j = small_tokenizer();
  j["model"]["vocab"]["hello"] = "five";
  CHECK_THROWS_WITH(wordpiece_tokenizer::from_json(j, 16), Catch::Contains("hello"));
  j = small_tokenizer();
  j.erase("model");
  CHECK_THROWS_AS(wordpiece_tokenizer::from_json(j, 16), frugal::error);
  CHECK_THROWS_AS(wordpiece_tokenizer::from_json(json::array(), 16), frugal::error);
}
