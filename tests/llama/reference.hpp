// A plain single-sequence Llama forward written for the tests, independently of the example
// engine: llama2.c's algorithm over its .bin file, contiguous K/V, one token at a time, float
// arithmetic. What the engine's tokens are checked against.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

namespace reference {

struct llama2c {
  int dim = 0, hidden = 0, layers = 0, heads = 0, kv_heads = 0, vocab = 0, seq_len = 0;
  std::vector<float> file;  // the floats after the header
  const float *embedding = nullptr, *rms_att = nullptr, *wq = nullptr, *wk = nullptr, *wv = nullptr,
              *wo = nullptr, *rms_ffn = nullptr, *w1 = nullptr, *w2 = nullptr, *w3 = nullptr,
              *rms_final = nullptr;

  explicit llama2c(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (bytes.size() < 28) throw std::runtime_error("short file");
    int header[7];
    std::memcpy(header, bytes.data(), sizeof header);
    dim = header[0], hidden = header[1], layers = header[2], heads = header[3];
    kv_heads = header[4], vocab = header[5], seq_len = header[6];
    file.resize((bytes.size() - 28) / 4);
    std::memcpy(file.data(), bytes.data() + 28, file.size() * 4);
    const int head = dim / heads, kv_dim = kv_heads * head;
    const float* p = file.data();
    auto take = [&p](std::size_t n) {
      const float* at = p;
      p += n;
      return at;
    };
    embedding = take(std::size_t(vocab) * dim);
    rms_att = take(std::size_t(layers) * dim);
    wq = take(std::size_t(layers) * dim * dim);
    wk = take(std::size_t(layers) * kv_dim * dim);
    wv = take(std::size_t(layers) * kv_dim * dim);
    wo = take(std::size_t(layers) * dim * dim);
    rms_ffn = take(std::size_t(layers) * dim);
    w1 = take(std::size_t(layers) * hidden * dim);
    w2 = take(std::size_t(layers) * dim * hidden);
    w3 = take(std::size_t(layers) * hidden * dim);
    rms_final = take(dim);
  }
};

/// One sequence, fed token by token; logits() after each.
class run_state {
 public:
  explicit run_state(const llama2c& m)
      : m_(m),
        head_(m.dim / m.heads),
        kv_dim_(m.kv_heads * head_),
        key_(std::size_t(m.layers) * m.seq_len * kv_dim_),
        value_(key_.size()),
        x_(m.dim),
        xb_(m.dim),
        xb2_(m.dim),
        q_(m.dim),
        k_(kv_dim_),
        v_(kv_dim_),
        h_(m.hidden),
        h2_(m.hidden),
        att_(m.seq_len),
        logits_(m.vocab) {}

  const std::vector<float>& step(int token, int pos) {
    const int dim = m_.dim;
    std::memcpy(x_.data(), m_.embedding + std::size_t(token) * dim, dim * sizeof(float));
    for (int l = 0; l < m_.layers; ++l) {
      norm(xb_.data(), x_.data(), m_.rms_att + l * dim, dim);
      mul(q_.data(), xb_.data(), m_.wq + std::size_t(l) * dim * dim, dim, dim);
      mul(k_.data(), xb_.data(), m_.wk + std::size_t(l) * kv_dim_ * dim, dim, kv_dim_);
      mul(v_.data(), xb_.data(), m_.wv + std::size_t(l) * kv_dim_ * dim, dim, kv_dim_);
      for (int i = 0; i < dim; i += 2) {
        const int hd = i % head_;
        const float angle = pos * (1.0f / std::pow(10000.0f, hd / float(head_)));
        const float c = std::cos(angle), s = std::sin(angle);
        for (int which = 0; which < (i < kv_dim_ ? 2 : 1); ++which) {
          float* vec = which == 0 ? q_.data() : k_.data();
          const float a = vec[i], b = vec[i + 1];
          vec[i] = a * c - b * s;
          vec[i + 1] = a * s + b * c;
        }
      }
      float* kc = key_.data() + std::size_t(l) * m_.seq_len * kv_dim_;
      float* vc = value_.data() + std::size_t(l) * m_.seq_len * kv_dim_;
      std::memcpy(kc + std::size_t(pos) * kv_dim_, k_.data(), kv_dim_ * sizeof(float));
      std::memcpy(vc + std::size_t(pos) * kv_dim_, v_.data(), kv_dim_ * sizeof(float));
      for (int h = 0; h < m_.heads; ++h) {
        const int kvh = h / (m_.heads / m_.kv_heads);
        float max = -1e30f;
        for (int t = 0; t <= pos; ++t) {
          float score = 0;
          for (int d = 0; d < head_; ++d)
            score += q_[h * head_ + d] * kc[t * kv_dim_ + kvh * head_ + d];
          att_[t] = score / std::sqrt(float(head_));
          if (att_[t] > max) max = att_[t];
        }
        float sum = 0;
        for (int t = 0; t <= pos; ++t) sum += att_[t] = std::exp(att_[t] - max);
        for (int d = 0; d < head_; ++d) {
          float acc = 0;
          for (int t = 0; t <= pos; ++t) acc += att_[t] / sum * vc[t * kv_dim_ + kvh * head_ + d];
          xb_[h * head_ + d] = acc;
        }
      }
      mul(xb2_.data(), xb_.data(), m_.wo + std::size_t(l) * dim * dim, dim, dim);
      for (int i = 0; i < dim; ++i) x_[i] += xb2_[i];
      norm(xb_.data(), x_.data(), m_.rms_ffn + l * dim, dim);
      mul(h_.data(), xb_.data(), m_.w1 + std::size_t(l) * m_.hidden * dim, dim, m_.hidden);
      mul(h2_.data(), xb_.data(), m_.w3 + std::size_t(l) * m_.hidden * dim, dim, m_.hidden);
      for (int i = 0; i < m_.hidden; ++i)
        h_[i] = h_[i] * (1.0f / (1.0f + std::exp(-h_[i]))) * h2_[i];
      mul(xb_.data(), h_.data(), m_.w2 + std::size_t(l) * dim * m_.hidden, m_.hidden, dim);
      for (int i = 0; i < dim; ++i) x_[i] += xb_[i];
    }
    norm(x_.data(), x_.data(), m_.rms_final, dim);
    mul(logits_.data(), x_.data(), m_.embedding, dim, m_.vocab);
    return logits_;
  }

 private:
  static void norm(float* o, const float* x, const float* w, int n) {
    float ss = 0;
    for (int i = 0; i < n; ++i) ss += x[i] * x[i];
    ss = 1.0f / std::sqrt(ss / n + 1e-5f);
    for (int i = 0; i < n; ++i) o[i] = w[i] * (ss * x[i]);
  }
  static void mul(float* out, const float* x, const float* w, int n, int d) {
    for (int i = 0; i < d; ++i) {
      float v = 0;
      for (int j = 0; j < n; ++j) v += w[std::size_t(i) * n + j] * x[j];
      out[i] = v;
    }
  }

  const llama2c& m_;
  int head_, kv_dim_;
  std::vector<float> key_, value_, x_, xb_, xb2_, q_, k_, v_, h_, h2_, att_, logits_;
};

/// Greedy generation: tokens after `prompt` until the end token (1) or `max_new`; the margin
/// between the two best logits at each generated position is kept beside.
struct generation {
  std::vector<int> tokens;
  std::vector<float> margins;
};

inline generation greedy(const llama2c& m, const std::vector<int>& prompt, int max_new) {
  run_state state(m);
  generation out;
  int pos = 0;
  for (; pos + 1 < int(prompt.size()); ++pos) state.step(prompt[pos], pos);
  int token = prompt.back();
  while (int(out.tokens.size()) < max_new && pos < m.seq_len) {
    const std::vector<float>& logits = state.step(token, pos++);
    int best = 0, second = -1;
    for (int i = 1; i < m.vocab; ++i) {
      if (logits[i] > logits[best]) {
        second = best;
        best = i;
      } else if (second < 0 || logits[i] > logits[second]) {
        second = i;
      }
    }
    out.tokens.push_back(best);
    out.margins.push_back(logits[best] - logits[second]);
    if (best == 1) break;
    token = best;
  }
  return out;
}

}  // namespace reference
