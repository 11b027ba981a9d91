// KV page transfers over UCX (UCP): one worker per agent, the pool registered once, puts or gets
// per contiguous run of pages, an endpoint flush, then a notification as an active message.
// Built without UCX (FRUGAL_HAS_UCX unset), the agent's constructor throws.
#include <frugal/kv/transfer.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#if FRUGAL_HAS_UCX
#include <ucp/api/ucp.h>
#include <unistd.h>
#endif

namespace frugal::kv {

std::vector<page_run> merge_page_runs(std::span<const page_id> local,
                                      std::span<const page_id> remote) {
  FRUGAL_EXPECTS(local.size() == remote.size(), "kv::merge_page_runs: lists of different length",
                 invalid_argument);
  std::vector<page_run> runs;
  for (std::size_t i = 0; i < local.size(); ++i) {
    if (!runs.empty()) {
      page_run& last = runs.back();
      if (local[i] == last.local + last.count && remote[i] == last.remote + last.count) {
        ++last.count;
        continue;
      }
    }
    runs.push_back({local[i], remote[i], 1});
  }
  return runs;
}

namespace detail {
struct transfer_state {
  transfer_agent::impl* agent = nullptr;  // null once the agent is gone
  std::string peer;
  std::uint64_t id = 0;
  bool is_write = true;
  std::size_t pages = 0, descriptors = 0, bytes = 0;
  transfer_status status = transfer_status::pending;
  std::string error;
  // Requests outstanding in UCX (puts/gets, then the flush, then the notification).
  std::size_t outstanding = 0;
  int stage = 0;        // 0: data and flush posted; 1: notification posted
  std::string message;  // the notification, alive until sent
};
}  // namespace detail

#if FRUGAL_HAS_UCX
namespace {
std::string describe(const detail::transfer_state& s) {
  return std::string(s.is_write ? "write" : "read") + " " + std::to_string(s.id) + " (" +
         std::to_string(s.pages) + " pages) " + (s.is_write ? "to" : "from") + " peer '" + s.peer +
         "'";
}
}  // namespace
#endif

// ---- transfer handle ----------------------------------------------------------------------------

transfer_status transfer::status() const noexcept {
  return state_ ? state_->status : transfer_status::failed;
}
const std::string& transfer::error() const noexcept {
  static const std::string none;
  return state_ ? state_->error : none;
}
std::uint64_t transfer::id() const noexcept { return state_ ? state_->id : 0; }
const std::string& transfer::peer() const noexcept {
  static const std::string none;
  return state_ ? state_->peer : none;
}
std::size_t transfer::pages() const noexcept { return state_ ? state_->pages : 0; }
std::size_t transfer::descriptors() const noexcept { return state_ ? state_->descriptors : 0; }
std::size_t transfer::bytes() const noexcept { return state_ ? state_->bytes : 0; }

#if FRUGAL_HAS_UCX

bool transfer_available() noexcept { return true; }

namespace {

constexpr unsigned notification_am_id = 0x4B56;  // "KV"
constexpr char metadata_magic[4] = {'F', 'R', 'K', 'V'};

// Little-endian encoding of the metadata blob and the notification (docs/transfer.md).
struct writer {
  std::string out;
  template <class T>
  void put(T value) {
    for (std::size_t i = 0; i < sizeof(T); ++i)
      out.push_back(static_cast<char>((static_cast<std::uint64_t>(value) >> (8 * i)) & 0xFF));
  }
  void bytes(const void* p, std::size_t n) { out.append(static_cast<const char*>(p), n); }
};

struct reader {
  std::string_view in;
  std::size_t at = 0;
  const char* what;
  void need(std::size_t n) const {
    FRUGAL_EXPECTS(in.size() - at >= n,
                   std::string(what) + ": truncated at byte " + std::to_string(at) + " of " +
                       std::to_string(in.size()),
                   invalid_argument);
  }
  template <class T>
  T get() {
    need(sizeof(T));
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i)
      v |= std::uint64_t{static_cast<unsigned char>(in[at + i])} << (8 * i);
    at += sizeof(T);
    return static_cast<T>(v);
  }
  std::string_view bytes(std::size_t n) {
    need(n);
    const std::string_view s = in.substr(at, n);
    at += n;
    return s;
  }
};

std::string ucx_message(const char* call, ucs_status_t status) {
  return std::string(call) + " failed: " + ucs_status_string(status);
}

// This boot of this machine (failure_detection::process probes only peers on it).
std::string boot_id() {
  FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "r");
  if (f == nullptr) return {};
  char id[64] = {};
  const std::size_t n = std::fread(id, 1, sizeof id - 1, f);
  std::fclose(f);
  std::string out(id, n);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

std::string describe_layout(const layout& l) {
  return "page_size " + std::to_string(l.page_size) + ", " + std::to_string(l.num_layers) +
         " layers, " + std::to_string(l.num_kv_heads) + " KV heads, head_dim " +
         std::to_string(l.head_dim) + ", " + std::string(to_string(l.dtype)) + ", " +
         (l.order == order::nhd ? "NHD" : "HND");
}

}  // namespace

struct transfer_agent::impl {
  struct peer {
    std::string name;
    ucp_ep_h ep = nullptr;
    ucp_rkey_h rkey = nullptr;
    kv::layout layout;
    std::uint32_t num_pages = 0;
    std::uint64_t base = 0;
    std::uint64_t page_stride = 0;
    std::uint32_t pid = 0;  // for failure_detection::process
    bool closed = false;    // the endpoint was closed after the peer died
    std::string error;      // "" while healthy
    bool reported = false;  // by take_failed_peers
  };

  std::string name;
  const page_pool* pool;
  ucp_context_h context = nullptr;
  ucp_worker_h worker = nullptr;
  ucp_mem_h memh = nullptr;
  std::string worker_address, rkey;
  bool device_memory = false;
  transfer_options options;
  std::chrono::steady_clock::time_point next_probe{};
  std::vector<std::unique_ptr<peer>> peers;
  std::vector<std::shared_ptr<detail::transfer_state>> active;
  std::vector<transfer_notification> notifications;

  peer* find(std::string_view n) const noexcept {
    for (const auto& p : peers)
      if (p->name == n) return p.get();
    return nullptr;
  }

  static void on_peer_error(void* arg, ucp_ep_h, ucs_status_t status) {
    auto* p = static_cast<peer*>(arg);
    if (p->error.empty()) p->error = "peer '" + p->name + "' failed: " + ucs_status_string(status);
  }

  static ucs_status_t on_notification(void* arg, const void*, size_t, void* data, size_t length,
                                      const ucp_am_recv_param_t* param) {
    auto* self = static_cast<impl*>(arg);
    if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0) return UCS_OK;  // never sent so
    try {
      reader r{{static_cast<const char*>(data), length}, 0, "kv::transfer notification"};
      if (r.get<std::uint8_t>() != transfer_notification_version) return UCS_OK;
      transfer_notification n;
      n.what = static_cast<transfer_notification::kind>(r.get<std::uint8_t>());
      const auto name_length = r.get<std::uint16_t>();
      n.pages = r.get<std::uint32_t>();
      n.id = r.get<std::uint64_t>();
      n.peer = std::string(r.bytes(name_length));
      self->notifications.push_back(std::move(n));
    } catch (const std::exception&) {
      // A malformed notification is dropped: nothing in this process waits on it.
    }
    return UCS_OK;
  }

  static void on_request_done(void* request, ucs_status_t status, void* user_data) {
    auto* s = static_cast<detail::transfer_state*>(user_data);
    if (status != UCS_OK && s->error.empty())
      s->error = describe(*s) + " failed: " + ucs_status_string(status);
    --s->outstanding;
    ucp_request_free(request);
  }

  // Posts one request's result into the state: done now, pending, or failed.
  void account(detail::transfer_state& s, ucs_status_ptr_t r, const char* call) {
    if (r == nullptr) return;
    if (UCS_PTR_IS_ERR(r)) {
      if (s.error.empty()) s.error = describe(s) + ": " + ucx_message(call, UCS_PTR_STATUS(r));
      return;
    }
    ++s.outstanding;
  }

  ucp_request_param_t request_param(detail::transfer_state& s) {
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    p.cb.send = &impl::on_request_done;
    p.user_data = &s;
    return p;
  }

  // Moves a transfer on once UCX has finished its requests: flush done -> notify -> done.
  void advance(detail::transfer_state& s) {
    if (s.status != transfer_status::pending) return;
    // A dead peer fails its transfers at once: without UCX's error handling (failure_detection
    // process) their requests may never complete; the state stays in `active` until they do.
    peer* p = find(s.peer);
    if (s.error.empty() && (p == nullptr || !p->error.empty()))
      s.error = describe(s) + " failed: " + (p ? p->error : "the peer was removed");
    if (s.outstanding > 0 && s.error.empty()) return;
    if (!s.error.empty()) {
      s.status = transfer_status::failed;
      return;
    }
    if (s.stage == 1) {
      s.status = transfer_status::done;
      return;
    }
    s.stage = 1;
    writer w;
    w.put<std::uint8_t>(transfer_notification_version);
    w.put<std::uint8_t>(s.is_write ? 0 : 1);
    w.put<std::uint16_t>(static_cast<std::uint16_t>(name.size()));
    w.put<std::uint32_t>(static_cast<std::uint32_t>(s.pages));
    w.put<std::uint64_t>(s.id);
    w.bytes(name.data(), name.size());
    s.message = std::move(w.out);
    ucp_request_param_t param = request_param(s);
    param.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = UCP_AM_SEND_FLAG_EAGER;
    account(s,
            ucp_am_send_nbx(p->ep, notification_am_id, nullptr, 0, s.message.data(),
                            s.message.size(), &param),
            "ucp_am_send_nbx");
    advance(s);
  }

  // Force-closes a peer's endpoint: UCX completes its outstanding requests with an error.
  void close_endpoint(peer& p) {
    if (p.closed) return;
    p.closed = true;
    ucp_rkey_destroy(p.rkey);
    ucp_request_param_t close{};
    close.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    close.flags = UCP_EP_CLOSE_FLAG_FORCE;
    const ucs_status_ptr_t r = ucp_ep_close_nbx(p.ep, &close);
    if (r != nullptr && !UCS_PTR_IS_ERR(r)) {
      while (ucp_request_check_status(r) == UCS_INPROGRESS) ucp_worker_progress(worker);
      ucp_request_free(r);
    }
  }

  // failure_detection::process: a peer whose process is gone (or a zombie) has failed.
  void probe_processes() {
    const auto now = std::chrono::steady_clock::now();
    if (now < next_probe) return;
    next_probe =
        now + (options.keepalive.count() > 0 ? options.keepalive : std::chrono::milliseconds(100));
    for (auto& p : peers) {
      if (!p->error.empty() || p->pid == 0) continue;
      FILE* f = std::fopen(("/proc/" + std::to_string(p->pid) + "/stat").c_str(), "r");
      char state = 'X';
      if (f != nullptr) {
        // "pid (comm) state ...": the state follows the last ')'.
        char line[512] = {};
        const std::size_t n = std::fread(line, 1, sizeof line - 1, f);
        std::fclose(f);
        const char* close = std::strrchr(line, ')');
        if (n > 0 && close != nullptr && close[1] == ' ') state = close[2];
      }
      if (state == 'Z' || state == 'X') {
        p->error =
            "peer '" + p->name + "' failed: its process " + std::to_string(p->pid) + " has exited";
        close_endpoint(*p);
      }
    }
  }

  void progress() {
    while (ucp_worker_progress(worker) != 0) {
    }
    if (options.failure_detection == peer_failure_detection::process) probe_processes();
    for (auto& s : active) advance(*s);
    std::erase_if(active, [](const auto& s) {
      return s->status != transfer_status::pending && s->outstanding == 0;
    });
  }

  transfer post(bool is_write, std::span<const page_id> local, std::string_view peer_name,
                std::span<const page_id> remote, std::uint64_t id);
};

transfer_agent::transfer_agent(std::string name, const page_pool& pool, transfer_options options)
    : impl_(std::make_unique<impl>()) {
  FRUGAL_EXPECTS(!name.empty() && name.size() <= 255,
                 "kv::transfer_agent: the name must be 1 to 255 bytes", invalid_argument);
  FRUGAL_EXPECTS(options.max_put_bytes > 0, "kv::transfer_agent: max_put_bytes is zero",
                 invalid_argument);
  impl& m = *impl_;
  m.name = std::move(name);
  m.pool = &pool;
  m.options = options;
  // Every failure below leaves what was made to ~impl (through the unique_ptr) via this guard.
  struct cleanup {
    impl* m;
    bool armed = true;
    ~cleanup() {
      if (!armed) return;
      if (m->memh) ucp_mem_unmap(m->context, m->memh);
      if (m->worker) ucp_worker_destroy(m->worker);
      if (m->context) ucp_cleanup(m->context);
    }
  } guard{&m};
  auto check = [&](ucs_status_t status, const char* call) {
    if (status != UCS_OK)
      FRUGAL_FAIL("kv::transfer_agent '" + m.name + "': " + ucx_message(call, status),
                  transfer_error);
  };

  ucp_config_t* config = nullptr;
  check(ucp_config_read(nullptr, nullptr, &config), "ucp_config_read");
  ucs_status_t status = UCS_OK;
  if (!options.transports.empty())
    status = ucp_config_modify(config, "TLS", options.transports.c_str());
  if (status == UCS_OK && options.keepalive.count() > 0) {
    const std::string interval = std::to_string(options.keepalive.count()) + "ms";
    status = ucp_config_modify(config, "KEEPALIVE_INTERVAL", interval.c_str());
  }
  if (status != UCS_OK) {
    ucp_config_release(config);
    check(status, "ucp_config_modify");
  }
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED;
  params.features = UCP_FEATURE_RMA | UCP_FEATURE_AM;
  params.mt_workers_shared = 0;
  status = ucp_init(&params, config, &m.context);
  ucp_config_release(config);
  check(status, "ucp_init");

  ucp_context_attr_t attr{};
  attr.field_mask = UCP_ATTR_FIELD_MEMORY_TYPES;
  check(ucp_context_query(m.context, &attr), "ucp_context_query");
  m.device_memory = (attr.memory_types & UCS_BIT(UCS_MEMORY_TYPE_CUDA)) != 0;

  ucp_worker_params_t worker_params{};
  worker_params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  worker_params.thread_mode = UCS_THREAD_MODE_SINGLE;
  check(ucp_worker_create(m.context, &worker_params, &m.worker), "ucp_worker_create");

  ucp_address_t* address = nullptr;
  std::size_t address_length = 0;
  check(ucp_worker_get_address(m.worker, &address, &address_length), "ucp_worker_get_address");
  m.worker_address.assign(reinterpret_cast<const char*>(address), address_length);
  ucp_worker_release_address(m.worker, address);

  ucp_mem_map_params_t map{};
  map.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  map.address = pool.memory().data();
  map.length = pool.memory().size();
  check(ucp_mem_map(m.context, &map, &m.memh), "ucp_mem_map");
  void* packed = nullptr;
  std::size_t packed_length = 0;
  check(ucp_rkey_pack(m.context, m.memh, &packed, &packed_length), "ucp_rkey_pack");
  m.rkey.assign(static_cast<const char*>(packed), packed_length);
  ucp_rkey_buffer_release(packed);

  ucp_am_handler_param_t handler{};
  handler.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_FLAGS |
                       UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG;
  handler.id = notification_am_id;
  handler.flags = UCP_AM_FLAG_WHOLE_MSG;
  handler.cb = &impl::on_notification;
  handler.arg = &m;
  check(ucp_worker_set_am_recv_handler(m.worker, &handler), "ucp_worker_set_am_recv_handler");
  guard.armed = false;
}

transfer_agent::~transfer_agent() {
  impl& m = *impl_;
  for (auto& s : m.active) {
    if (s->status == transfer_status::pending) {
      s->status = transfer_status::failed;
      if (s->error.empty()) s->error = describe(*s) + " failed: the agent was destroyed";
    }
  }
  while (!m.peers.empty()) remove_peer(m.peers.back()->name);
  // Requests that outlive their endpoints complete (with an error) inside progress.
  for (int i = 0; i < 1000 && std::any_of(m.active.begin(), m.active.end(),
                                          [](const auto& s) { return s->outstanding > 0; });
       ++i)
    ucp_worker_progress(m.worker);
  for (auto& s : m.active) s->agent = nullptr;
  ucp_mem_unmap(m.context, m.memh);
  ucp_worker_destroy(m.worker);
  ucp_cleanup(m.context);
}

const std::string& transfer_agent::name() const noexcept { return impl_->name; }

std::string transfer_agent::metadata() const {
  const impl& m = *impl_;
  const layout& l = m.pool->layout();
  writer w;
  w.bytes(metadata_magic, 4);
  w.put<std::uint8_t>(transfer_metadata_version);
  w.put<std::uint8_t>(static_cast<std::uint8_t>(m.name.size()));
  w.bytes(m.name.data(), m.name.size());
  w.put<std::uint32_t>(l.num_layers);
  w.put<std::uint32_t>(l.num_kv_heads);
  w.put<std::uint32_t>(l.head_dim);
  w.put<std::uint32_t>(l.page_size);
  w.put<std::uint8_t>(static_cast<std::uint8_t>(l.dtype));
  w.put<std::uint8_t>(static_cast<std::uint8_t>(l.order));
  w.put<std::uint8_t>(static_cast<std::uint8_t>(l.scales));
  w.put<std::uint32_t>(m.pool->num_pages());
  w.put<std::uint64_t>(m.pool->page_stride());
  w.put<std::uint64_t>(reinterpret_cast<std::uintptr_t>(m.pool->memory().data()));
  w.put<std::uint8_t>(static_cast<std::uint8_t>(m.options.failure_detection));
  w.put<std::uint32_t>(static_cast<std::uint32_t>(::getpid()));
  const std::string boot = boot_id();
  w.put<std::uint8_t>(static_cast<std::uint8_t>(boot.size()));
  w.bytes(boot.data(), boot.size());
  w.put<std::uint32_t>(static_cast<std::uint32_t>(m.worker_address.size()));
  w.bytes(m.worker_address.data(), m.worker_address.size());
  w.put<std::uint32_t>(static_cast<std::uint32_t>(m.rkey.size()));
  w.bytes(m.rkey.data(), m.rkey.size());
  return std::move(w.out);
}

std::string transfer_agent::load_peer(std::string_view metadata) {
  impl& m = *impl_;
  reader r{metadata, 0, "kv::transfer_agent::load_peer: metadata"};
  FRUGAL_EXPECTS(
      r.bytes(std::min<std::size_t>(4, metadata.size())) == std::string_view(metadata_magic, 4),
      "kv::transfer_agent::load_peer: not a frugal KV metadata blob", invalid_argument);
  const auto version = r.get<std::uint8_t>();
  FRUGAL_EXPECTS(version == transfer_metadata_version,
                 "kv::transfer_agent::load_peer: metadata version " + std::to_string(version) +
                     ", this build reads version " + std::to_string(transfer_metadata_version),
                 invalid_argument);
  auto p = std::make_unique<impl::peer>();
  p->name = std::string(r.bytes(r.get<std::uint8_t>()));
  FRUGAL_EXPECTS(!p->name.empty(), "kv::transfer_agent::load_peer: the peer's name is empty",
                 invalid_argument);
  p->layout.num_layers = r.get<std::uint32_t>();
  p->layout.num_kv_heads = r.get<std::uint32_t>();
  p->layout.head_dim = r.get<std::uint32_t>();
  p->layout.page_size = r.get<std::uint32_t>();
  p->layout.dtype = static_cast<dtype>(r.get<std::uint8_t>());
  p->layout.order = static_cast<order>(r.get<std::uint8_t>());
  p->layout.scales = static_cast<scale_granularity>(r.get<std::uint8_t>());
  p->num_pages = r.get<std::uint32_t>();
  p->page_stride = r.get<std::uint64_t>();
  p->base = r.get<std::uint64_t>();
  const auto detection = r.get<std::uint8_t>();
  p->pid = r.get<std::uint32_t>();
  const std::string_view boot = r.bytes(r.get<std::uint8_t>());
  FRUGAL_EXPECTS(detection == static_cast<std::uint8_t>(m.options.failure_detection),
                 "kv::transfer_agent::load_peer: peer '" + p->name +
                     "' detects failures another way (failure_detection " +
                     std::to_string(detection) + " there, " +
                     std::to_string(static_cast<int>(m.options.failure_detection)) + " here)",
                 invalid_argument);
  FRUGAL_EXPECTS(m.options.failure_detection != peer_failure_detection::process ||
                     (boot == boot_id() && !boot.empty()),
                 "kv::transfer_agent::load_peer: peer '" + p->name +
                     "' runs on another machine; failure_detection::process needs it on this one",
                 invalid_argument);
  const std::string_view address = r.bytes(r.get<std::uint32_t>());
  const std::string_view rkey = r.bytes(r.get<std::uint32_t>());
  // Its own metadata is allowed (a copy within the pool through UCX's self transport).
  FRUGAL_EXPECTS(p->name != m.name || address == m.worker_address,
                 "kv::transfer_agent::load_peer: the peer has this agent's name '" + m.name + "'",
                 invalid_argument);
  FRUGAL_EXPECTS(r.at == metadata.size(),
                 "kv::transfer_agent::load_peer: " + std::to_string(metadata.size() - r.at) +
                     " bytes after the metadata",
                 invalid_argument);

  FRUGAL_EXPECTS(m.find(p->name) == nullptr,
                 "kv::transfer_agent::load_peer: peer '" + p->name + "' is already loaded",
                 invalid_argument);
  ucp_ep_params_t ep_params{};
  ep_params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
  if (m.options.failure_detection == peer_failure_detection::ucx)
    ep_params.field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLER;
  ep_params.address = reinterpret_cast<const ucp_address_t*>(address.data());
  const bool ucx_detects = m.options.failure_detection == peer_failure_detection::ucx;
  ep_params.err_mode = ucx_detects ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE;
  ep_params.err_handler.cb = &impl::on_peer_error;
  ep_params.err_handler.arg = p.get();
  ucs_status_t status = ucp_ep_create(m.worker, &ep_params, &p->ep);
  if (status != UCS_OK)
    FRUGAL_FAIL("kv::transfer_agent::load_peer: peer '" + p->name +
                    "': " + ucx_message("ucp_ep_create", status),
                transfer_error);
  status = ucp_ep_rkey_unpack(p->ep, rkey.data(), &p->rkey);
  if (status != UCS_OK) {
    ucp_request_param_t close{};
    close.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    close.flags = UCP_EP_CLOSE_FLAG_FORCE;
    const ucs_status_ptr_t r2 = ucp_ep_close_nbx(p->ep, &close);
    while (r2 != nullptr && !UCS_PTR_IS_ERR(r2) && ucp_request_check_status(r2) == UCS_INPROGRESS)
      ucp_worker_progress(m.worker);
    if (r2 != nullptr && !UCS_PTR_IS_ERR(r2)) ucp_request_free(r2);
    FRUGAL_FAIL("kv::transfer_agent::load_peer: peer '" + p->name +
                    "': " + ucx_message("ucp_ep_rkey_unpack", status),
                transfer_error);
  }
  std::string name = p->name;
  m.peers.push_back(std::move(p));
  return name;
}

void transfer_agent::remove_peer(std::string_view name) {
  impl& m = *impl_;
  const auto it =
      std::find_if(m.peers.begin(), m.peers.end(), [&](const auto& p) { return p->name == name; });
  if (it == m.peers.end()) return;
  impl::peer& p = **it;
  m.close_endpoint(p);
  for (auto& s : m.active)
    if (s->peer == name && s->error.empty())
      s->error = describe(*s) + " failed: the peer was removed";
  m.peers.erase(it);
  m.progress();
}

bool transfer_agent::has_peer(std::string_view name) const noexcept {
  return impl_->find(name) != nullptr;
}

std::string transfer_agent::peer_error(std::string_view name) const {
  const impl::peer* p = impl_->find(name);
  return p ? p->error : std::string();
}

std::vector<std::string> transfer_agent::take_failed_peers() {
  impl_->progress();
  std::vector<std::string> out;
  for (auto& p : impl_->peers)
    if (!p->error.empty() && !p->reported) {
      p->reported = true;
      out.push_back(p->name);
    }
  return out;
}

transfer transfer_agent::impl::post(bool is_write, std::span<const page_id> local,
                                    std::string_view peer_name, std::span<const page_id> remote,
                                    std::uint64_t id) {
  const char* op = is_write ? "kv::transfer_agent::write" : "kv::transfer_agent::read";
  peer* p = find(peer_name);
  if (p == nullptr)
    FRUGAL_FAIL(std::string(op) + ": unknown peer '" + std::string(peer_name) + "'",
                transfer_error);
  if (!p->error.empty()) FRUGAL_FAIL(std::string(op) + ": " + p->error, transfer_error);
  FRUGAL_EXPECTS(!local.empty() && local.size() == remote.size(),
                 std::string(op) + ": " + std::to_string(local.size()) + " local and " +
                     std::to_string(remote.size()) + " remote pages (equal and non-zero needed)",
                 invalid_argument);
  FRUGAL_EXPECTS(p->layout == pool->layout(),
                 std::string(op) + ": peer '" + p->name + "' has another layout (" +
                     describe_layout(p->layout) + " there, " + describe_layout(pool->layout()) +
                     " here); pages are not re-tiled",
                 invalid_argument);
  for (const page_id l : local)
    FRUGAL_EXPECTS(l < pool->num_pages() && pool->is_allocated(l),
                   std::string(op) + ": local page " + std::to_string(l) +
                       (l < pool->num_pages() ? " is not allocated"
                                              : " is outside the pool of " +
                                                    std::to_string(pool->num_pages()) + " pages"),
                   invalid_argument);
  for (const page_id r : remote)
    FRUGAL_EXPECTS(r < p->num_pages,
                   std::string(op) + ": page " + std::to_string(r) + " is outside peer '" +
                       p->name + "''s pool of " + std::to_string(p->num_pages) + " pages",
                   invalid_argument);
  // A page written twice in one transfer has no defined content.
  std::vector<page_id> targets(is_write ? remote.begin() : local.begin(),
                               is_write ? remote.end() : local.end());
  std::sort(targets.begin(), targets.end());
  const auto twice = std::adjacent_find(targets.begin(), targets.end());
  FRUGAL_EXPECTS(twice == targets.end(),
                 std::string(op) + ": " + (is_write ? "remote" : "local") + " page " +
                     (twice == targets.end() ? std::string() : std::to_string(*twice)) +
                     " is named twice",
                 invalid_argument);

  const std::vector<page_run> runs = merge_page_runs(local, remote);
  auto s = std::make_shared<detail::transfer_state>();
  s->agent = this;
  s->peer = p->name;
  s->id = id;
  s->is_write = is_write;
  s->pages = local.size();
  s->descriptors = runs.size();
  const std::size_t stride = pool->page_stride(), page_bytes = pool->layout().page_bytes();
  for (const page_run& run : runs) {
    // A run covers the padding between its pages too: one contiguous range on both sides,
    // posted in pieces of at most max_put_bytes.
    const std::size_t bytes = (run.count - 1) * stride + page_bytes;
    s->bytes += bytes;
    for (std::size_t at = 0; at < bytes && s->error.empty(); at += options.max_put_bytes) {
      const std::size_t piece = std::min(options.max_put_bytes, bytes - at);
      std::byte* here = pool->page_address(run.local) + at;
      const std::uint64_t there = p->base + std::uint64_t{run.remote} * p->page_stride + at;
      ucp_request_param_t param = request_param(*s);
      param.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
      param.memh = memh;
      if (is_write)
        account(*s, ucp_put_nbx(p->ep, here, piece, there, p->rkey, &param), "ucp_put_nbx");
      else
        account(*s, ucp_get_nbx(p->ep, here, piece, there, p->rkey, &param), "ucp_get_nbx");
    }
    if (!s->error.empty()) break;
  }
  // Remote completion of every put (or arrival of every get) before the notification.
  if (s->error.empty()) {
    ucp_request_param_t param = request_param(*s);
    account(*s, ucp_ep_flush_nbx(p->ep, &param), "ucp_ep_flush_nbx");
  }
  active.push_back(s);
  advance(*s);
  return transfer(std::move(s));
}

transfer transfer_agent::write(std::span<const page_id> local, std::string_view peer,
                               std::span<const page_id> remote, std::uint64_t id) {
  return impl_->post(true, local, peer, remote, id);
}

transfer transfer_agent::read(std::span<const page_id> local, std::string_view peer,
                              std::span<const page_id> remote, std::uint64_t id) {
  return impl_->post(false, local, peer, remote, id);
}

void transfer_agent::progress() { impl_->progress(); }

std::vector<transfer_notification> transfer_agent::take_notifications() {
  impl_->progress();
  return std::exchange(impl_->notifications, {});
}

std::size_t transfer_agent::active_transfers() const noexcept {
  return static_cast<std::size_t>(
      std::count_if(impl_->active.begin(), impl_->active.end(),
                    [](const auto& s) { return s->status == transfer_status::pending; }));
}

bool transfer_agent::supports_device_memory() const noexcept { return impl_->device_memory; }

std::string transfer_agent::peer_endpoint_info(std::string_view name) const {
  const impl::peer* p = impl_->find(name);
  if (p == nullptr) return {};
  char* text = nullptr;
  std::size_t length = 0;
  FILE* stream = open_memstream(&text, &length);
  if (stream == nullptr) return {};
  ucp_ep_print_info(p->ep, stream);
  std::fclose(stream);
  std::string out(text, length);
  std::free(text);
  return out;
}

transfer_status transfer::poll() {
  if (state_ && state_->agent) state_->agent->progress();
  return status();
}

transfer_status transfer::wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (poll() == transfer_status::pending && std::chrono::steady_clock::now() < deadline) {
  }
  return status();
}

#else  // no UCX in this build

bool transfer_available() noexcept { return false; }

struct transfer_agent::impl {};

transfer_agent::transfer_agent(std::string, const page_pool&, transfer_options) {
  FRUGAL_FAIL("kv::transfer_agent: this build of frugal has no UCX (FRUGAL_ENABLE_UCX)",
              transfer_error);
}
transfer_agent::~transfer_agent() = default;
const std::string& transfer_agent::name() const noexcept {
  static const std::string none;
  return none;
}
std::string transfer_agent::metadata() const { return {}; }
std::string transfer_agent::load_peer(std::string_view) { return {}; }
void transfer_agent::remove_peer(std::string_view) {}
bool transfer_agent::has_peer(std::string_view) const noexcept { return false; }
std::string transfer_agent::peer_error(std::string_view) const { return {}; }
std::vector<std::string> transfer_agent::take_failed_peers() { return {}; }
transfer transfer_agent::write(std::span<const page_id>, std::string_view, std::span<const page_id>,
                               std::uint64_t) {
  return {};
}
transfer transfer_agent::read(std::span<const page_id>, std::string_view, std::span<const page_id>,
                              std::uint64_t) {
  return {};
}
void transfer_agent::progress() {}
std::vector<transfer_notification> transfer_agent::take_notifications() { return {}; }
std::size_t transfer_agent::active_transfers() const noexcept { return 0; }
std::string transfer_agent::peer_endpoint_info(std::string_view) const { return {}; }
bool transfer_agent::supports_device_memory() const noexcept { return false; }
transfer_status transfer::poll() { return status(); }
transfer_status transfer::wait(std::chrono::milliseconds) { return status(); }

#endif

// ---- the cache's side ---------------------------------------------------------------------------

std::optional<std::vector<page_id>> sequence_receiver::reserve(std::uint64_t id, std::string peer,
                                                               std::span<const token_id> tokens,
                                                               clock::time_point deadline,
                                                               std::uint64_t extra_key) {
  FRUGAL_EXPECTS(
      std::none_of(pending_.begin(), pending_.end(), [&](const waiting& w) { return w.id == id; }),
      "kv::sequence_receiver::reserve: id " + std::to_string(id) + " is already awaited",
      invalid_argument);
  // Nothing registered for prefix hits until the data is here (computed_tokens = 0).
  std::optional<sequence> seq = cache_->try_add_sequence(tokens, extra_key, 0);
  if (!seq) return std::nullopt;
  const std::size_t first = seq->cached_tokens() / cache_->layout().page_size;
  std::vector<page_id> pages(seq->pages().begin() + static_cast<std::ptrdiff_t>(first),
                             seq->pages().end());
  pending_.push_back({id, std::move(peer), std::move(*seq), deadline});
  return pages;
}

std::size_t sequence_receiver::cached_tokens(std::uint64_t id) const {
  for (const waiting& w : pending_)
    if (w.id == id) return w.sequence.cached_tokens();
  FRUGAL_FAIL("kv::sequence_receiver: no reservation " + std::to_string(id), invalid_argument);
  return 0;
}

std::vector<sequence_receiver::arrival> sequence_receiver::poll(clock::time_point now) {
  for (const transfer_notification& n : agent_->take_notifications()) {
    if (n.what != transfer_notification::kind::write_done) continue;
    for (waiting& w : pending_)
      if (w.id == n.id && w.peer == n.peer) w.arrived = true;
  }
  std::vector<arrival> out;
  std::erase_if(pending_, [&](waiting& w) {
    arrival a;
    a.id = w.id;
    if (w.arrived) {
      cache_->mark_computed(w.sequence, w.sequence.num_tokens());
      a.sequence = std::move(w.sequence);
    } else if (std::string e = agent_->peer_error(w.peer);
               !e.empty() || !agent_->has_peer(w.peer)) {
      a.error = "sequence " + std::to_string(w.id) + " from peer '" + w.peer +
                "' lost: " + (e.empty() ? "the peer was removed" : e);
    } else if (now >= w.deadline) {
      a.error = "sequence " + std::to_string(w.id) + " from peer '" + w.peer +
                "' did not arrive before its deadline";
    } else {
      return false;
    }
    w.sequence.release();  // no-op when moved into the arrival
    out.push_back(std::move(a));
    return true;
  });
  return out;
}

const transfer& sequence_sender::send(sequence seq, std::size_t first_page, std::string_view peer,
                                      std::span<const page_id> remote, std::uint64_t id) {
  const std::span<const page_id> pages = seq.pages();
  FRUGAL_EXPECTS(first_page + remote.size() <= pages.size(),
                 "kv::sequence_sender::send: " + std::to_string(remote.size()) +
                     " remote pages from page " + std::to_string(first_page) +
                     " of a sequence of " + std::to_string(pages.size()),
                 invalid_argument);
  transfer t = agent_->write(pages.subspan(first_page, remote.size()), peer, remote, id);
  sending_.push_back({std::move(seq), std::move(t)});
  return sending_.back().handle;
}

std::vector<sequence_sender::completion> sequence_sender::poll() {
  agent_->progress();
  std::vector<completion> out;
  std::erase_if(sending_, [&](sending& s) {
    const transfer_status st = s.handle.status();
    if (st == transfer_status::pending) return false;
    out.push_back({s.handle.id(), st == transfer_status::failed ? s.handle.error() : ""});
    s.sequence.release();
    return true;
  });
  return out;
}

}  // namespace frugal::kv
