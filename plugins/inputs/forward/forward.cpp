// forward input: the Fluentd / Fluent Bit forward protocol v1 over TCP or TLS, so that existing
// agents (Fluent Bit's out_forward, Fluentd's out_forward, Docker's fluentd log driver) ship to
// devmesh unchanged. All four modes (Message, Forward, PackedForward, CompressedPackedForward with
// gzip or zstd), EventTime or integer times, the `chunk` option answered with {"ack": chunk} only
// once the ack model says the records are safe (ack: accepted | delivered | durable), and the
// shared-key handshake (HELO, PING, PONG with SHA-512 digests, optional username and password).
//
// Frames are cut from the byte stream by FrameScanner, which bounds a frame's size and nesting
// before msgpack-c builds anything; a frame that breaks the protocol or a bound is counted, logged
// with the peer and what is wrong, and its connection closed without an ack (the client keeps the
// chunk and sends it again). An event that is malformed inside a good frame is counted and
// skipped; the rest of its chunk is kept and acknowledged.
#include <msgpack.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <unistd.h>
#include <devmesh/plugin.hpp>

#include <algorithm>
#include <cstring>
#include <deque>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <body_codec.hpp>
#include <listen_tls.hpp>
#include <monotonic_ms.hpp>
#include <stream_server.hpp>

#include "forward_records.hpp"
#include "frame_scanner.hpp"

namespace devmesh {
namespace {

using forward::FrameScanner;
using forward::RecordBuilder;
using forward::Reject;

// msgpack-c's own unpacker keeps a fixed stack of 32 containers; a frame is refused before it.
// A record is 4 levels down in Forward mode ([tag, [[time, {...}]]]): the rest is for its values.
constexpr uint32_t kMaxDepth = 31;
// Events turned into records per loop turn: a 2 MB chunk of 20,000 events is ten turns of a few
// milliseconds each, not one of 40.
constexpr uint32_t kSlice = 2048;
// The largest PING taken before the handshake (Fluent Bit's reads of it stop at 1 KiB).
constexpr size_t kMaxPing = 4096;

const char *const kAckModes[] = {"accepted", "delivered", "durable", nullptr};

// Connection-level problems, each a label of forward_protocol_errors_total.
enum ErrorKind { kTooLarge, kTooDeep, kMalformed, kProtocol, kCompression, kAuth, kErrorKinds };
const char *const kErrorLabels[kErrorKinds] = {"too_large", "too_deep",    "malformed",
                                               "protocol",  "compression", "auth"};

enum Mode { kMessage, kForward, kPacked, kCompressed, kModes };
const char *const kModeLabels[kModes] = {"message", "forward", "packed_forward",
                                         "compressed_packed_forward"};

const Reject kRejects[] = {Reject::kBadTime, Reject::kNotAMap, Reject::kBadEntry};

const dm_option kOptions[] = {
    {"listen", DM_OPT_STRING, DM_OPT_LISTEN, "127.0.0.1:24224", 0, 0, nullptr,
     "address and port to take forward-protocol connections on (24224 is Fluentd's)", 0},
    {"ack", DM_OPT_STRING, 0, "delivered", 0, 0, kAckModes,
     "when a chunk that asks for an acknowledgement (Fluent Bit's require_ack_response, "
     "Fluentd's require_ack_response) is answered: accepted once its records are queued; "
     "delivered once every output is done with them; durable once they are fsynced to "
     "service.storage (needs it). A chunk whose records fail for good, or that is not "
     "acknowledged within ack_timeout, gets no ack: its connection is closed so the client "
     "sends it again",
     0},
    {"ack_timeout", DM_OPT_DURATION, DM_OPT_BOUNDED, "30s", 100, 3600000, nullptr,
     "longest wait for a chunk's acknowledgement: past it the connection is closed without the "
     "ack (the client re-sends; each record's event_id makes the store keep it once), counted "
     "in forward_ack_timeouts_total",
     0},
    {"shared_key", DM_OPT_STRING, DM_OPT_SECRET, nullptr, 0, 0, nullptr,
     "when set, clients must pass the forward protocol's handshake (HELO, PING, PONG) with this "
     "key before sending; failures are counted and answered with PONG false",
     0},
    {"self_hostname", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "this server's name in the handshake's PONG (default: the machine's host name)", 0},
    {"username", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "with shared_key: clients must also give this username and password", 0},
    {"password", DM_OPT_STRING, DM_OPT_SECRET, nullptr, 0, 0, nullptr, "the password of username",
     0},
    {"service_key", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "the record key whose value is the record's service (default: the keys service or "
     "service.name); a record without it gets its forward tag as the service",
     0},
    // Fluentd's chunk_limit_size is 8MB and Fluent Bit's chunks about 2MB: twice that leaves room.
    {"max_chunk", DM_OPT_SIZE, DM_OPT_BOUNDED, "16MiB", 1024, 1024.0 * 1024 * 1024, nullptr,
     "largest forward message buffered from a connection, and largest payload of a compressed "
     "chunk after decompression; a larger one closes the connection (counted in "
     "forward_protocol_errors_total{reason=\"too_large\"})",
     0},
    {"max_meta_keys", DM_OPT_INT, DM_OPT_BOUNDED, "1024", 1, 1e6, nullptr,
     "most meta keys kept from one record; the rest are left out and the record flagged in meta "
     "truncated",
     0},
    {"max_connections", DM_OPT_INT, DM_OPT_BOUNDED, "1024", 1, 65536, nullptr,
     "most connections open at once; more are refused (forward_connections_refused_total)", 0},
    // Longer than any ack_timeout (checked): a client waiting for its ack is never idle-closed.
    {"idle_timeout", DM_OPT_DURATION, DM_OPT_BOUNDED, "10m", 1000, 7 * 86400000.0, nullptr,
     "a connection that sends nothing this long is closed, also one stopped part-way through a "
     "message or a TLS handshake (counted in forward_connections_closed_total{reason=\"idle\"}); "
     "must be longer than ack_timeout",
     0},
    DM_TLS_OPTIONS(ListenTls, tls),
};

std::string sha512_hex(std::initializer_list<std::string_view> parts) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  unsigned char digest[SHA512_DIGEST_LENGTH] = {};
  unsigned int len = 0;
  const bool ok = ctx != nullptr && EVP_DigestInit_ex(ctx, EVP_sha512(), nullptr) == 1;
  for (std::string_view p : parts)
    if (ok) EVP_DigestUpdate(ctx, p.data(), p.size());
  if (!ok || EVP_DigestFinal_ex(ctx, digest, &len) != 1) {
    EVP_MD_CTX_free(ctx);
    throw std::runtime_error("SHA-512 failed");
  }
  EVP_MD_CTX_free(ctx);
  static const char d[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * sizeof digest);
  for (unsigned char c : digest) out += d[c >> 4], out += d[c & 15];
  return out;
}

bool equal_secret(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string_view text_of(const msgpack_object &o) {
  if (o.type == MSGPACK_OBJECT_STR) return {o.via.str.ptr, o.via.str.size};
  if (o.type == MSGPACK_OBJECT_BIN) return {o.via.bin.ptr, o.via.bin.size};
  return {};
}
bool is_text(const msgpack_object &o) {
  return o.type == MSGPACK_OBJECT_STR || o.type == MSGPACK_OBJECT_BIN;
}

const char *type_name(const msgpack_object &o) {
  switch (o.type) {
    case MSGPACK_OBJECT_NIL:
      return "nil";
    case MSGPACK_OBJECT_BOOLEAN:
      return "a boolean";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
      return "an integer";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
      return "a float";
    case MSGPACK_OBJECT_STR:
      return "a string";
    case MSGPACK_OBJECT_BIN:
      return "binary";
    case MSGPACK_OBJECT_ARRAY:
      return "an array";
    case MSGPACK_OBJECT_MAP:
      return "a map";
    case MSGPACK_OBJECT_EXT:
      return "an ext value";
  }
  return "unknown";
}

// The peer's address without its port: the host of records that name none (stable across the
// client's reconnections, so a re-sent event keeps its id).
std::string address_only(const std::string &peer) {
  if (!peer.empty() && peer.front() == '[') return peer.substr(1, peer.find(']') - 1);
  const size_t colon = peer.rfind(':');
  return colon == std::string::npos ? peer : peer.substr(0, colon);
}

// A small msgpack message built with msgpack-c's packer (answers: HELO, PONG, ack).
class Packer {
 public:
  Packer() {
    msgpack_sbuffer_init(&buf_);
    msgpack_packer_init(&pk_, &buf_, msgpack_sbuffer_write);
  }
  ~Packer() { msgpack_sbuffer_destroy(&buf_); }
  Packer(const Packer &) = delete;
  Packer &operator=(const Packer &) = delete;
  Packer &array(size_t n) { return msgpack_pack_array(&pk_, n), *this; }
  Packer &map(size_t n) { return msgpack_pack_map(&pk_, n), *this; }
  Packer &str(std::string_view s) {
    msgpack_pack_str(&pk_, s.size());
    msgpack_pack_str_body(&pk_, s.data(), s.size());
    return *this;
  }
  Packer &bin(const void *p, size_t n) {
    msgpack_pack_bin(&pk_, n);
    msgpack_pack_bin_body(&pk_, p, n);
    return *this;
  }
  Packer &boolean(bool b) {
    return (b ? msgpack_pack_true(&pk_) : msgpack_pack_false(&pk_)), *this;
  }
  Packer &object(const msgpack_object &o) { return msgpack_pack_object(&pk_, o), *this; }
  std::string_view bytes() const { return {buf_.data, buf_.size}; }

 private:
  msgpack_sbuffer buf_;
  msgpack_packer pk_;
};

// A chunk that asked for an ack: answered once every batch of it is submitted and (with ack:
// delivered or durable) acknowledged; given up (no ack, connection closed) when a batch fails
// for good or ack_timeout passes.
struct ChunkWait {
  uint64_t connection = 0;
  std::string chunk;
  uint32_t outstanding = 0;  // submitted batches not acknowledged yet
  bool all_submitted = false;
  bool finished = false;  // acked, or given up
  bool timed_out = false;
};

// A forward message in progress: its msgpack tree (kept alive between slices) and how far it is.
struct Work {
  Work() { msgpack_unpacked_init(&frame); }
  ~Work() { msgpack_unpacked_destroy(&frame); }
  Work(const Work &) = delete;
  Work &operator=(const Work &) = delete;

  msgpack_unpacked frame;
  Mode mode = kForward;
  std::string_view tag;
  const msgpack_object *time = nullptr, *record = nullptr;  // Message mode
  const msgpack_object *entries = nullptr;                  // Forward mode
  uint32_t next = 0;
  std::string inflated;     // CompressedPackedForward's payload
  std::string_view packed;  // PackedForward's entries (into frame or inflated)
  size_t offset = 0;
  bool skip = false;    // not logs (fluent_signal): nothing to add
  bool filled = false;  // every event is in a batch (the last one may still be held)
  uint64_t rejected[4] = {};
  std::shared_ptr<ChunkWait> wait;  // when the message asked for an ack
};

// One client connection: its stream buffer and where the handshake stands.
struct Client {
  explicit Client(size_t max_chunk) : scanner(max_chunk, kMaxDepth) {
    if (!msgpack_unpacker_init(&unpacker, 64 * 1024)) throw std::bad_alloc();
  }
  ~Client() { msgpack_unpacker_destroy(&unpacker); }
  Client(const Client &) = delete;
  Client &operator=(const Client &) = delete;

  uint64_t id = 0;
  msgpack_unpacker unpacker;
  FrameScanner scanner;
  bool authenticated = false;
  unsigned char nonce[16] = {}, auth_salt[16] = {};
  std::string address;   // the peer's address, without port
  std::string hostname;  // the client's self_hostname from its PING
  // The message being turned into records, a slice per loop turn, and a batch of it that
  // submit refused under backpressure (submitted again at resume()).
  std::unique_ptr<Work> work;
  dm_batch *held = nullptr;
  bool in_process = false, gone = false;
};

class ForwardInput : public StreamHandler {
 public:
  ForwardInput(const dm_host_api *host, dm_instance *inst, const dm_config *cfg)
      : host_(host), inst_(inst), server_(host, inst, *this) {
    Config c{host, cfg};
    ConfigProblems problems(host, inst);
    listen_ = c.string("listen");
    const std::string ack = c.string("ack");
    ack_delivered_ = ack == "delivered";
    ack_durable_ = ack == "durable";
    if (ack_durable_ && !host->storage_enabled(inst))
      problems.add("ack",
                   "durable needs service.storage (records are durable only on disk); use "
                   "ack: delivered without storage");
    ack_timeout_ms_ = static_cast<uint64_t>(c.integer("ack_timeout"));
    if (c.has("shared_key")) {
      shared_key_ = c.string("shared_key");
      if (shared_key_.empty()) problems.add("shared_key", "must not be empty");
    }
    if (c.has("self_hostname")) {
      self_hostname_ = c.string("self_hostname");
    } else {
      char name[256] = {};
      if (gethostname(name, sizeof name - 1) != 0) std::strcpy(name, "localhost");
      self_hostname_ = name;
    }
    if (c.has("username")) username_ = c.string("username");
    if (c.has("password")) password_ = c.string("password");
    if (c.has("username") != c.has("password"))
      problems.add(c.has("username") ? "password" : "username",
                   "username and password go together");
    if (!username_.empty() && shared_key_.empty())
      problems.add("username", "needs shared_key (users are checked in its handshake)");
    if (c.has("self_hostname") && shared_key_.empty())
      problems.add("self_hostname", "is only sent in the shared_key handshake: set shared_key");
    if (c.has("service_key")) {
      service_key_ = c.string("service_key");
      if (service_key_.empty()) problems.add("service_key", "must not be empty");
    }
    max_chunk_ = static_cast<size_t>(c.integer("max_chunk"));
    max_connections_ = static_cast<size_t>(c.integer("max_connections"));
    idle_timeout_ms_ = static_cast<uint64_t>(c.integer("idle_timeout"));
    if (idle_timeout_ms_ <= ack_timeout_ms_)
      problems.add("idle_timeout",
                   "must be longer than ack_timeout (a client waiting for its ack sends nothing)");
    forward::Limits limits;
    limits.max_meta_keys = static_cast<uint32_t>(c.integer("max_meta_keys"));
    limits.service_key = service_key_;
    builder_ = std::make_unique<RecordBuilder>(host, limits);
    host->config_bind(cfg, &tls_);
    problems.refuse_if_any();
    if (!msgpack_zone_init(&zone_, 64 * 1024)) throw std::bad_alloc();
    zone_ready_ = true;
    register_metrics();
  }

  ~ForwardInput() override {
    server_.stop();
    for (auto &[id, client] : clients_) delete client;
    if (timer_) host_->timer_free(timer_);
    if (cont_timer_) host_->timer_free(cont_timer_);
    if (zone_ready_) msgpack_zone_destroy(&zone_);
  }

  int start() {
    std::string error;
    server_.set_max_connections(max_connections_);
    server_.set_idle_timeout(idle_timeout_ms_);
    if (!server_.listen(listen_, tls_.tls, error)) {
      host_->log(inst_, DM_LOG_ERROR, "%s", error.c_str());
      return 1;
    }
    host_->log(inst_, DM_LOG_INFO, "taking forward-protocol connections on %s%s%s (ack: %s)",
               listen_.c_str(), tls_.tls.cert && *tls_.tls.cert ? " over TLS" : "",
               shared_key_.empty() ? "" : " with a shared key",
               ack_delivered_ ? "delivered"
               : ack_durable_ ? "durable"
                              : "accepted");
    return 0;
  }

  // Nothing more is accepted, read or submitted, but the connections stay open until destroy:
  // the acks of chunks still in flight go out during the engine's grace period, so their
  // clients need not send them again.
  void stop() {
    stopped_ = true;
    server_.pause_all();
  }

  void pause() {
    paused_ = true;
    server_.pause_all();
  }

  void resume() {
    if (stopped_) return;
    paused_ = false;
    server_.resume_all();
    // Batches refused while paused go first, then the rest of each message, then what is
    // buffered.
    std::vector<uint64_t> ids;
    for (auto &[id, client] : clients_) ids.push_back(id);
    for (uint64_t id : ids) {
      if (paused_) return;
      drive(id);
    }
  }

  void on_ack(const dm_ack &ack) {
    if (ack.stage == DM_ACK_STORED && !ack_durable_) return;  // delivered waits for DONE
    auto it = waiting_.find(ack.ticket);
    if (it == waiting_.end()) return;
    std::shared_ptr<ChunkWait> w = std::move(it->second);
    waiting_.erase(it);
    --w->outstanding;
    if (ack.dead_lettered) host_->metric_add(m_dead_, ack.dead_lettered);
    if (ack.failed) host_->metric_add(m_failed_, ack.failed);
    if (w->finished) {
      if (w->timed_out) host_->metric_add(m_late_, 1);
      return;
    }
    if (ack.failed) {
      give_up(*w);
      host_->metric_add(m_unacked_, 1);
      host_->log(inst_, DM_LOG_ERROR,
                 "%u record deliveries of chunk %s failed permanently and were not kept (%s): "
                 "closing its connection without the ack, so the client sends it again",
                 ack.failed, printable(w->chunk).c_str(),
                 ack.failed_reason ? ack.failed_reason : "no reason given");
      if (StreamConnection *c = server_.find(w->connection)) c->close(true);
      return;
    }
    if (w->all_submitted && w->outstanding == 0) answer(*w);
  }

  // StreamHandler

  void on_open(StreamConnection &c) override {
    auto client = std::make_unique<Client>(max_chunk_);
    client->id = c.id();
    client->address = address_only(c.peer());
    client->authenticated = shared_key_.empty();
    // Before the handshake only a PING is taken: a stranger cannot make us buffer max_chunk.
    if (!client->authenticated) client->scanner.reset(kMaxPing);
    c.user = client.get();
    clients_.emplace(c.id(), client.release());
    host_->metric_set(m_connections_, static_cast<double>(clients_.size()));
    sync_refused();
    if (paused_ || stopped_) c.pause_reading();
    if (!shared_key_.empty()) send_helo(c, *clients_[c.id()]);
  }

  void on_data(StreamConnection &c, const char *data, size_t len) override {
    auto *client = static_cast<Client *>(c.user);
    if (client == nullptr) return;
    sync_refused();
    host_->metric_add(m_bytes_, static_cast<double>(len));
    if (!msgpack_unpacker_reserve_buffer(&client->unpacker, len)) {
      host_->log(inst_, DM_LOG_ERROR, "%s: out of memory buffering %zu bytes", c.peer().c_str(),
                 len);
      c.close(true);
      return;
    }
    std::memcpy(msgpack_unpacker_buffer(&client->unpacker), data, len);
    msgpack_unpacker_buffer_consumed(&client->unpacker, len);
    drive(client->id);
  }

  void on_handshake_failed(const std::string &peer, const std::string &reason) override {
    if (stopped_) return;
    if (reason == StreamServer::kIdleReason) {
      host_->metric_add(m_closed_idle_, 1);
      return;
    }
    host_->metric_add(m_tls_failed_, 1);
    host_->log(inst_, DM_LOG_DEBUG, "TLS handshake with %s failed: %s", peer.c_str(),
               reason.c_str());
  }

  void on_close(StreamConnection &c, const std::string &reason) override {
    sync_refused();
    if (reason == StreamServer::kIdleReason) host_->metric_add(m_closed_idle_, 1);
    auto *client = static_cast<Client *>(c.user);
    c.user = nullptr;
    if (client == nullptr) return;
    if (!reason.empty())
      host_->log(inst_, DM_LOG_DEBUG, "connection from %s closed: %s", c.peer().c_str(),
                 reason.c_str());
    clients_.erase(client->id);
    host_->metric_set(m_connections_, static_cast<double>(clients_.size()));
    if (client->held != nullptr) {
      host_->batch_free(client->held);  // never accepted: the client sends it again
      client->held = nullptr;
    }
    // A message cut short by the close is never acknowledged: the client sends it again.
    if (client->work && client->work->wait && !client->work->wait->finished)
      give_up(*client->work->wait);
    if (client->in_process) {
      client->gone = true;  // drive() on the stack frees it
    } else {
      delete client;
    }
  }

 private:
  struct Deadline {
    uint64_t at_ms;
    std::shared_ptr<ChunkWait> wait;
  };

  void register_metrics() {
    m_records_ = host_->metric_counter(inst_, "forward_records_total",
                                       "records taken and submitted to the pipeline", nullptr);
    for (Reject r : kRejects) {
      const std::string label = std::string("reason=\"") + forward::reject_label(r) + "\"";
      m_rejected_[static_cast<int>(r)] = host_->metric_counter(
          inst_, "forward_records_rejected_total",
          "events skipped inside a good message (bad time, record not a map, entry not "
          "[time, record]), by reason",
          label.c_str());
    }
    for (int k = 0; k < kErrorKinds; ++k) {
      const std::string label = std::string("reason=\"") + kErrorLabels[k] + "\"";
      m_errors_[k] = host_->metric_counter(
          inst_, "forward_protocol_errors_total",
          "connections closed for a message that breaks the protocol or a bound, by reason",
          label.c_str());
    }
    for (int m = 0; m < kModes; ++m) {
      const std::string label = std::string("mode=\"") + kModeLabels[m] + "\"";
      m_messages_[m] = host_->metric_counter(inst_, "forward_messages_total",
                                             "forward messages taken, by mode", label.c_str());
    }
    m_bytes_ = host_->metric_counter(inst_, "forward_bytes_total",
                                     "bytes received (before decompression)", nullptr);
    m_acks_ = host_->metric_counter(inst_, "forward_acks_total", "acks sent for chunks", nullptr);
    m_unacked_ = host_->metric_counter(
        inst_, "forward_chunks_unacked_total",
        "chunks whose records failed for good and were not kept: no ack, connection closed",
        nullptr);
    m_timeouts_ = host_->metric_counter(
        inst_, "forward_ack_timeouts_total",
        "chunks not acknowledged within ack_timeout: no ack, connection closed", nullptr);
    m_late_ = host_->metric_counter(inst_, "forward_late_acks_total",
                                    "acknowledgements that came after ack_timeout", nullptr);
    m_lost_acks_ = host_->metric_counter(
        inst_, "forward_acks_undelivered_total",
        "acks whose connection was gone (the client re-sends the chunk)", nullptr);
    m_waiting_ = host_->metric_gauge(inst_, "forward_chunks_waiting",
                                     "chunks waiting for their acknowledgement", nullptr);
    m_dead_ = host_->metric_counter(
        inst_, "forward_records_dead_lettered_total",
        "acknowledged record deliveries that went to a dead-letter file", nullptr);
    m_failed_ = host_->metric_counter(
        inst_, "forward_records_failed_total",
        "record deliveries that failed for good and were not kept (their chunk got no ack)",
        nullptr);
    m_truncated_ = host_->metric_counter(
        inst_, "forward_records_truncated_total",
        "records with a field cut to its column or meta keys left out (meta truncated)", nullptr);
    m_auth_ =
        host_->metric_counter(inst_, "forward_auth_failures_total",
                              "handshakes refused (shared key, user or malformed PING)", nullptr);
    m_held_ = host_->metric_counter(
        inst_, "forward_batches_held_total",
        "batches refused while backpressure paused the input, submitted again at resume", nullptr);
    m_connections_ =
        host_->metric_gauge(inst_, "forward_connections", "open client connections", nullptr);
    m_refused_ = host_->metric_counter(inst_, "forward_connections_refused_total",
                                       "connections refused at max_connections", nullptr);
    m_closed_idle_ =
        host_->metric_counter(inst_, "forward_connections_closed_total",
                              "connections closed by this side, by reason", "reason=\"idle\"");
    m_tls_failed_ = host_->metric_counter(
        inst_, "forward_tls_handshakes_failed_total",
        "TLS peers gone before their handshake completed (refused version or certificate, or "
        "the peer left)",
        nullptr);
  }

  void sync_refused() {
    const uint64_t now = server_.refused();
    if (now > refused_seen_)
      host_->metric_add(m_refused_, static_cast<double>(now - refused_seen_));
    refused_seen_ = now;
  }

  // A connection-level problem: counted, logged, the connection closed without an ack.
  void fail(StreamConnection &c, ErrorKind kind, const std::string &why) {
    host_->metric_add(m_errors_[kind], 1);
    host_->log(inst_, DM_LOG_WARN, "%s: %s; closing the connection (no ack: the client re-sends)",
               c.peer().c_str(), why.c_str());
    // After what is queued (a refusing PONG); nothing more is read meanwhile.
    c.close(kind != kAuth);
  }

  // Reads a message's header and option, then leaves its events to run(), a slice per turn.
  void handle(StreamConnection &c, Client &client, msgpack_unpacked &frame) {
    const msgpack_object &root = frame.data;
    if (!client.authenticated) return handle_ping(c, client, root);
    if (root.type != MSGPACK_OBJECT_ARRAY || root.via.array.size < 2 || root.via.array.size > 4)
      return fail(c, kProtocol,
                  std::string("a forward message is an array [tag, entries, option] of 2 to 4 "
                              "items; got ") +
                      type_name(root) +
                      (root.type == MSGPACK_OBJECT_ARRAY
                           ? " of " + std::to_string(root.via.array.size) + " items"
                           : std::string()));
    const msgpack_object *item = root.via.array.ptr;
    const uint32_t n = root.via.array.size;
    if (!is_text(item[0]))
      return fail(c, kProtocol,
                  std::string("the tag (item 0) is ") + type_name(item[0]) + ", not a string");
    const std::string_view tag = text_of(item[0]);
    const msgpack_object &second = item[1];
    Mode mode;
    uint32_t option_at;
    switch (second.type) {
      case MSGPACK_OBJECT_ARRAY:
        mode = kForward, option_at = 2;
        break;
      case MSGPACK_OBJECT_STR:
      case MSGPACK_OBJECT_BIN:
        mode = kPacked, option_at = 2;
        break;
      case MSGPACK_OBJECT_POSITIVE_INTEGER:
      case MSGPACK_OBJECT_NEGATIVE_INTEGER:
      case MSGPACK_OBJECT_FLOAT32:
      case MSGPACK_OBJECT_FLOAT64:
      case MSGPACK_OBJECT_EXT:
        if (n < 3)
          return fail(c, kProtocol,
                      "a Message-mode message needs [tag, time, record]; got 2 items");
        mode = kMessage, option_at = 3;
        break;
      default:
        return fail(c, kProtocol,
                    std::string("item 1 is ") + type_name(second) +
                        ": expected entries (an array), packed entries (bin or "
                        "str) or a time (Message mode)");
    }
    if (n > option_at + 1)
      return fail(c, kProtocol, "too many items (" + std::to_string(n) + ") for its mode");

    // The option map: chunk (ask for an ack), compressed, fluent_signal; others are ignored.
    bool has_chunk = false;
    std::string chunk;
    std::string_view compressed;
    int64_t signal = 0;
    if (n > option_at) {
      const msgpack_object &opt = item[option_at];
      if (opt.type != MSGPACK_OBJECT_MAP && opt.type != MSGPACK_OBJECT_NIL)
        return fail(c, kProtocol,
                    "the option (item " + std::to_string(option_at) + ") is " + type_name(opt) +
                        ", not a map");
      if (opt.type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < opt.via.map.size; ++i) {
          const std::string_view key = text_of(opt.via.map.ptr[i].key);
          const msgpack_object &v = opt.via.map.ptr[i].val;
          if (key == "chunk") {
            if (!is_text(v))
              return fail(c, kProtocol,
                          std::string("option chunk is ") + type_name(v) + ", not a string");
            has_chunk = true;
            chunk.assign(text_of(v));
          } else if (key == "compressed") {
            if (!is_text(v))
              return fail(c, kProtocol,
                          std::string("option compressed is ") + type_name(v) + ", not a string");
            compressed = text_of(v);
          } else if (key == "fluent_signal") {
            if (v.type != MSGPACK_OBJECT_POSITIVE_INTEGER)
              return fail(c, kProtocol, "option fluent_signal is not a positive integer");
            signal = static_cast<int64_t>(v.via.u64 > 100 ? 100 : v.via.u64);
          }
        }
      }
    }
    if (mode == kPacked && !compressed.empty() && compressed != "text") mode = kCompressed;
    host_->metric_add(m_messages_[mode], 1);

    auto work = std::make_unique<Work>();
    std::swap(work->frame, frame);  // the tree (and the bytes it points into) lives with the work
    work->mode = mode;
    work->tag = tag;
    if (signal != 0) {
      // Fluent Bit's metrics (1) and traces (2) over forward are not log records.
      host_->log(inst_, DM_LOG_WARN,
                 "%s: a message with fluent_signal %lld (metrics or traces, not logs) was "
                 "skipped",
                 c.peer().c_str(), static_cast<long long>(signal));
      ++work->rejected[static_cast<int>(Reject::kBadEntry)];
      work->skip = true;
    } else if (mode == kMessage) {
      work->time = &second;
      work->record = &item[2];
    } else if (mode == kForward) {
      work->entries = &second;
    } else {
      std::string_view packed = text_of(second);
      if (mode == kCompressed) {
        std::string why;
        BodyDecompressor::Status st;
        if (compressed == "gzip") {
          st = inflater_.gunzip(packed, max_chunk_, packed, why);
        } else if (compressed == "zstd") {
          st = inflater_.unzstd(packed, max_chunk_, packed, why);
        } else {
          return fail(c, kCompression,
                      "option compressed is \"" + printable(std::string(compressed)) +
                          "\": only gzip and zstd are taken");
        }
        if (st == BodyDecompressor::kTooLarge)
          return fail(c, kTooLarge,
                      "a compressed chunk inflates past max_chunk (" + std::to_string(max_chunk_) +
                          " bytes)");
        if (st != BodyDecompressor::kOk)
          return fail(c, kCompression,
                      "a compressed chunk is not valid " + std::string(compressed) + ": " + why);
        // The decompressor's buffer is shared: the payload is kept with the work.
        work->inflated.assign(packed);
        packed = work->inflated;
      }
      // Every entry's bounds are checked before any of them is submitted, so a refused frame
      // leaves nothing behind.
      if (!check_packed(c, packed)) return;
      work->packed = packed;
    }
    if (has_chunk) {
      work->wait = std::make_shared<ChunkWait>();
      work->wait->connection = c.id();
      work->wait->chunk = std::move(chunk);
      if (ack_delivered_ || ack_durable_) watch(work->wait);
    }
    client.work = std::move(work);
  }

  // PackedForward's entries are msgpack [time, record] values one after another: each must be
  // whole and within the bounds.
  bool check_packed(StreamConnection &c, std::string_view packed) {
    size_t off = 0;
    while (off < packed.size()) {
      FrameScanner &sc = packed_scanner_;
      sc.reset(packed.size() - off);
      const FrameScanner::Result r = sc.scan(packed.data() + off, packed.size() - off);
      if (r != FrameScanner::kComplete) {
        const std::string why =
            r == FrameScanner::kNeedMore ? "the packed entries end inside an entry" : sc.error();
        fail(c, sc.problem() == FrameScanner::kTooDeep ? kTooDeep : kMalformed,
             "packed entry at byte " + std::to_string(off) + ": " + why);
        return false;
      }
      off += sc.size();
    }
    return true;
  }

  // Adds up to `room` events of the work to batch; true when the message has no more.
  bool fill(Client &client, Work &w, dm_batch *batch, uint32_t room) {
    const forward::Origin origin{w.tag, client.hostname.empty()
                                            ? std::string_view(client.address)
                                            : std::string_view(client.hostname)};
    auto count = [&](Reject r) {
      if (r != Reject::kNone) ++w.rejected[static_cast<int>(r)];
    };
    if (w.skip) return true;
    if (w.mode == kMessage) {
      count(builder_->add(batch, *w.time, *w.record, origin));
      return true;
    }
    if (w.mode == kForward) {
      const msgpack_object_array &a = w.entries->via.array;
      for (; w.next < a.size && room > 0; ++w.next, --room)
        count(builder_->add_entry(batch, a.ptr[w.next], origin));
      return w.next == a.size;
    }
    for (; w.offset < w.packed.size() && room > 0; --room) {
      msgpack_object entry;
      size_t used = 0;
      // check_packed proved each entry whole: it decodes, and used is its size.
      const msgpack_unpack_return rc = msgpack_unpack(
          w.packed.data() + w.offset, w.packed.size() - w.offset, &used, &zone_, &entry);
      if (rc != MSGPACK_UNPACK_SUCCESS && rc != MSGPACK_UNPACK_EXTRA_BYTES)
        throw std::runtime_error("a checked packed entry did not decode");
      count(builder_->add_entry(batch, entry, origin));
      w.offset += used;
    }
    msgpack_zone_clear(&zone_);
    return w.offset >= w.packed.size();
  }

  // Turns the client's message into records, one slice per call: true when the message is done,
  // false when it waits (a slice was submitted and the rest continues on the next loop turn, or
  // submit refused it under backpressure).
  bool run(StreamConnection &c, Client &client) {
    Work &w = *client.work;
    if (paused_) return false;
    const uint32_t hint = w.mode == kForward
                              ? std::min<uint32_t>(w.entries->via.array.size - w.next, kSlice)
                          : w.mode == kMessage ? 1
                                               : 256;
    BatchOwner batch(host_, host_->batch_new(inst_, hint));
    if (batch.get() == nullptr) throw std::runtime_error("batch_new failed");
    const bool done = w.filled || fill(client, w, batch.get(), kSlice);
    w.filled = done;
    const uint64_t cut = builder_->truncated();
    if (cut > truncated_seen_)
      host_->metric_add(m_truncated_, static_cast<double>(cut - truncated_seen_));
    truncated_seen_ = cut;
    if (batch.get()->count > 0 && !submit(c, client, batch.release())) return false;
    if (!done) {
      continue_later(client.id);
      return false;
    }
    finish(c, client);
    return true;
  }

  // False when the batch is held (backpressure) or the connection is closing.
  bool submit(StreamConnection &c, Client &client, dm_batch *batch) {
    const uint32_t count = batch->count;
    uint64_t ticket = 0;
    const int rc = host_->submit(inst_, batch, &ticket);
    if (rc == DM_ERR_FULL) {
      client.held = batch;  // submitted again at resume(); nothing more is read meanwhile
      host_->metric_add(m_held_, 1);
      return false;
    }
    if (rc != DM_OK) {
      host_->batch_free(batch);
      host_->log(inst_, DM_LOG_INFO, "%s: the engine is stopping; closing without the ack",
                 c.peer().c_str());
      c.close(true);
      return false;
    }
    host_->metric_add(m_records_, count);
    const std::shared_ptr<ChunkWait> &w = client.work ? client.work->wait : nullptr_wait_;
    if (w && (ack_delivered_ || ack_durable_)) {
      waiting_.emplace(ticket, w);
      ++w->outstanding;
    }
    return true;
  }

  // The message is all submitted: its ack goes now (accepted, or every batch acknowledged) or
  // when the last acknowledgement comes.
  void finish(StreamConnection &c, Client &client) {
    std::unique_ptr<Work> w = std::move(client.work);
    uint64_t total = 0;
    for (Reject r : kRejects) {
      const uint64_t k = w->rejected[static_cast<int>(r)];
      if (k == 0) continue;
      total += k;
      host_->metric_add(m_rejected_[static_cast<int>(r)], static_cast<double>(k));
    }
    if (total)
      host_->log(inst_, DM_LOG_WARN,
                 "%s: %llu event(s) of a %s message skipped (bad time %llu, record not a map "
                 "%llu, entry not [time, record] or not logs %llu); the rest kept",
                 c.peer().c_str(), static_cast<unsigned long long>(total), kModeLabels[w->mode],
                 static_cast<unsigned long long>(w->rejected[1]),
                 static_cast<unsigned long long>(w->rejected[2]),
                 static_cast<unsigned long long>(w->rejected[3]));
    if (!w->wait) return;
    ChunkWait &cw = *w->wait;
    cw.all_submitted = true;
    if (!cw.finished && cw.outstanding == 0) answer(cw);
  }

  // Runs what the client has: a held batch, the rest of its message, then the frames buffered.
  void drive(uint64_t id) {
    auto it = clients_.find(id);
    StreamConnection *conn = server_.find(id);
    if (it == clients_.end() || conn == nullptr) return;
    Client &client = *it->second;
    StreamConnection &c = *conn;
    if (client.in_process) return;
    client.in_process = true;
    try {
      while (!client.gone && !stopped_ && server_.find(id) != nullptr) {
        if (client.held != nullptr) {
          if (paused_) break;
          dm_batch *b = client.held;
          client.held = nullptr;
          if (!submit(c, client, b)) break;
        }
        if (client.work) {
          if (!run(c, client)) break;
          continue;
        }
        if (paused_) break;
        msgpack_unpacker &u = client.unpacker;
        const size_t available = u.used - u.off;
        if (available == 0) break;
        const FrameScanner::Result r = client.scanner.scan(u.buffer + u.off, available);
        if (r == FrameScanner::kNeedMore) break;
        if (r == FrameScanner::kError) {
          const ErrorKind kind = client.scanner.problem() == FrameScanner::kTooLarge  ? kTooLarge
                                 : client.scanner.problem() == FrameScanner::kTooDeep ? kTooDeep
                                                                                      : kMalformed;
          fail(c, kind, client.scanner.error());
          break;
        }
        client.scanner.reset();
        msgpack_unpacked frame;
        msgpack_unpacked_init(&frame);
        const msgpack_unpack_return rc = msgpack_unpacker_next(&u, &frame);
        if (rc != MSGPACK_UNPACK_SUCCESS) {
          msgpack_unpacked_destroy(&frame);
          fail(c, kMalformed, "msgpack-c could not decode a frame the scanner took");
          break;
        }
        try {
          handle(c, client, frame);
        } catch (...) {
          msgpack_unpacked_destroy(&frame);
          throw;
        }
        msgpack_unpacked_destroy(&frame);
      }
    } catch (const std::exception &e) {
      host_->log(inst_, DM_LOG_ERROR, "%s: %s; closing the connection", c.peer().c_str(), e.what());
      if (server_.find(id) != nullptr) c.close(true);
    }
    client.in_process = false;
    if (client.gone) {
      delete &client;
      return;
    }
    if (server_.find(id) == nullptr) return;
    // Reading waits while a message is in progress, so one client's buffer stays one frame.
    const bool busy = client.work || client.held != nullptr || paused_ || stopped_;
    if (busy) {
      c.pause_reading();
    } else if (c.reading_paused()) {
      c.resume_reading();  // may read (TLS) and drive this client again
    }
  }

  void continue_later(uint64_t id) {
    continuing_.push_back(id);
    if (cont_timer_ == nullptr) cont_timer_ = host_->timer_new(inst_, on_continue, this);
    if (cont_timer_ != nullptr) host_->timer_start(cont_timer_, 0, 0);
  }

  static void on_continue(void *arg) {
    auto *self = static_cast<ForwardInput *>(arg);
    guarded(self->host_, self->inst_, 0, [&] {
      std::vector<uint64_t> ids;
      ids.swap(self->continuing_);
      for (uint64_t id : ids) self->drive(id);
      return 0;
    });
  }

  // A chunk waiting for acknowledgements, with its deadline.
  void watch(const std::shared_ptr<ChunkWait> &w) {
    ++chunks_waiting_;
    host_->metric_set(m_waiting_, static_cast<double>(chunks_waiting_));
    deadlines_.push_back(Deadline{monotonic_ms() + ack_timeout_ms_, w});
    if (timer_ == nullptr) timer_ = host_->timer_new(inst_, on_timer, this);
    if (deadlines_.size() == 1 && timer_ != nullptr) host_->timer_start(timer_, ack_timeout_ms_, 0);
  }

  void answer(ChunkWait &w) {
    const bool watched = ack_delivered_ || ack_durable_;
    w.finished = true;
    if (watched) {
      --chunks_waiting_;
      host_->metric_set(m_waiting_, static_cast<double>(chunks_waiting_));
      drop_answered_deadlines();
    }
    send_ack(w.connection, w.chunk);
  }

  // No ack will be sent for this chunk.
  void give_up(ChunkWait &w) {
    if (w.finished) return;
    w.finished = true;
    if (ack_delivered_ || ack_durable_) {
      --chunks_waiting_;
      host_->metric_set(m_waiting_, static_cast<double>(chunks_waiting_));
    }
  }

  static void on_timer(void *arg) {
    auto *self = static_cast<ForwardInput *>(arg);
    guarded(self->host_, self->inst_, 0, [&] { return self->expire(), 0; });
  }

  // Chunks past ack_timeout: their connection is closed without the ack, so the client sends
  // them again (their records are not recalled; the re-send is absorbed by their event_ids).
  void expire() {
    const uint64_t now = monotonic_ms();
    while (!deadlines_.empty() && deadlines_.front().at_ms <= now) {
      std::shared_ptr<ChunkWait> w = std::move(deadlines_.front().wait);
      deadlines_.pop_front();
      if (w->finished) continue;
      give_up(*w);
      w->timed_out = true;
      host_->metric_add(m_timeouts_, 1);
      host_->log(inst_, DM_LOG_WARN,
                 "chunk %s not acknowledged within ack_timeout (%llu ms): closing its "
                 "connection without the ack, so the client sends it again",
                 printable(w->chunk).c_str(), static_cast<unsigned long long>(ack_timeout_ms_));
      if (StreamConnection *c = server_.find(w->connection)) c->close(true);
    }
    drop_answered_deadlines();
    if (!deadlines_.empty()) host_->timer_start(timer_, deadlines_.front().at_ms - now, 0);
  }

  void drop_answered_deadlines() {
    while (!deadlines_.empty() && deadlines_.front().wait->finished) deadlines_.pop_front();
  }

  void send_ack(uint64_t connection, const std::string &chunk) {
    StreamConnection *c = server_.find(connection);
    if (c == nullptr) {
      host_->metric_add(m_lost_acks_, 1);
      return;
    }
    Packer p;
    p.map(1).str("ack").str(chunk);
    if (c->write(p.bytes().data(), p.bytes().size())) {
      host_->metric_add(m_acks_, 1);
    } else {
      host_->metric_add(m_lost_acks_, 1);
    }
  }

  // ---- the shared-key handshake ----------------------------------------------------------------

  void send_helo(StreamConnection &c, Client &client) {
    if (RAND_bytes(client.nonce, sizeof client.nonce) != 1 ||
        RAND_bytes(client.auth_salt, sizeof client.auth_salt) != 1) {
      host_->log(inst_, DM_LOG_ERROR, "no random bytes for the handshake's nonce");
      c.close(true);
      return;
    }
    Packer p;
    p.array(2).str("HELO").map(3).str("nonce").bin(client.nonce, sizeof client.nonce).str("auth");
    if (username_.empty()) {
      p.str("");  // no user authentication (as Fluentd says it)
    } else {
      p.bin(client.auth_salt, sizeof client.auth_salt);
    }
    p.str("keepalive").boolean(true);
    c.write(p.bytes().data(), p.bytes().size());
  }

  // ["PING", self_hostname, shared_key_salt, sha512_hex(salt + hostname + nonce + shared_key),
  //  username, sha512_hex(auth_salt + username + password)]
  void handle_ping(StreamConnection &c, Client &client, const msgpack_object &root) {
    const std::string_view nonce(reinterpret_cast<const char *>(client.nonce), sizeof client.nonce);
    if (root.type != MSGPACK_OBJECT_ARRAY || root.via.array.size != 6 ||
        text_of(root.via.array.ptr[0]) != "PING") {
      // Data before the handshake: nothing of it is taken.
      host_->metric_add(m_auth_, 1);
      return fail(c, kAuth,
                  "expected the handshake's PING (shared_key is set); got " +
                      std::string(type_name(root)) + " that is not a PING");
    }
    const msgpack_object *f = root.via.array.ptr;
    for (int i = 1; i < 6; ++i)
      if (!is_text(f[i])) {
        host_->metric_add(m_auth_, 1);
        refuse(c, "malformed PING");
        return fail(c, kAuth,
                    "PING item " + std::to_string(i) + " is " + type_name(f[i]) + ", not a string");
      }
    const std::string_view hostname = text_of(f[1]), salt = text_of(f[2]), digest = text_of(f[3]),
                           user = text_of(f[4]), user_digest = text_of(f[5]);
    if (!equal_secret(digest, sha512_hex({salt, hostname, nonce, shared_key_}))) {
      host_->metric_add(m_auth_, 1);
      refuse(c, "shared_key mismatch");
      return fail(c, kAuth,
                  "PING from " + printable(std::string(hostname)) + ": shared_key mismatch");
    }
    if (!username_.empty()) {
      const std::string_view auth_salt(reinterpret_cast<const char *>(client.auth_salt),
                                       sizeof client.auth_salt);
      if (!equal_secret(user, username_) ||
          !equal_secret(user_digest, sha512_hex({auth_salt, username_, password_}))) {
        host_->metric_add(m_auth_, 1);
        refuse(c, "username/password mismatch");
        return fail(
            c, kAuth,
            "PING from " + printable(std::string(hostname)) + ": username/password mismatch");
      }
    }
    Packer p;
    p.array(5)
        .str("PONG")
        .boolean(true)
        .str("")
        .str(self_hostname_)
        .str(sha512_hex({salt, self_hostname_, nonce, shared_key_}));
    client.authenticated = true;
    client.hostname.assign(hostname);
    client.scanner.reset(max_chunk_);
    c.write(p.bytes().data(), p.bytes().size());
  }

  // PONG false with the reason: the client logs it instead of a bare disconnect.
  void refuse(StreamConnection &c, const char *reason) {
    Packer p;
    p.array(5).str("PONG").boolean(false).str(reason).str("").str("");
    c.write(p.bytes().data(), p.bytes().size());
  }

  // A client-given text for a log line: at most 64 bytes, control characters as '?'.
  static std::string printable(const std::string &s) {
    std::string out = s.substr(0, 64);
    for (char &ch : out)
      if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ch = '?';
    return out;
  }

  const dm_host_api *host_;
  dm_instance *inst_;
  StreamServer server_;
  std::string listen_, shared_key_, self_hostname_, username_, password_, service_key_;
  ListenTls tls_;
  bool ack_delivered_ = false, ack_durable_ = false;
  uint64_t ack_timeout_ms_ = 0;
  uint64_t idle_timeout_ms_ = 0;
  size_t max_chunk_ = 0, max_connections_ = 0;
  bool paused_ = false, stopped_ = false;

  std::unique_ptr<RecordBuilder> builder_;
  BodyDecompressor inflater_;
  msgpack_zone zone_{};
  bool zone_ready_ = false;
  FrameScanner packed_scanner_{1, kMaxDepth};
  std::unordered_map<uint64_t, Client *> clients_;  // by connection id; freed in on_close

  // ticket -> the chunk it is part of (ack: delivered or durable)
  std::unordered_map<uint64_t, std::shared_ptr<ChunkWait>> waiting_;
  std::deque<Deadline> deadlines_;  // arrival order is deadline order
  size_t chunks_waiting_ = 0;
  dm_timer *timer_ = nullptr;
  std::vector<uint64_t> continuing_;  // clients whose message goes on next turn
  dm_timer *cont_timer_ = nullptr;
  const std::shared_ptr<ChunkWait> nullptr_wait_;

  uint64_t refused_seen_ = 0, truncated_seen_ = 0;
  dm_metric *m_records_, *m_bytes_, *m_acks_, *m_unacked_, *m_timeouts_, *m_late_, *m_lost_acks_,
      *m_waiting_, *m_dead_, *m_failed_, *m_truncated_, *m_auth_, *m_connections_, *m_refused_,
      *m_closed_idle_ = nullptr, *m_tls_failed_ = nullptr, *m_held_;
  dm_metric *m_rejected_[4] = {};
  dm_metric *m_errors_[kErrorKinds] = {};
  dm_metric *m_messages_[kModes] = {};
};

}  // namespace
}  // namespace devmesh

DEVMESH_PLUGIN(devmesh::PluginAdapter<devmesh::ForwardInput>::describe(
    DM_INPUT, "forward", "0.1.0",
    "takes the Fluentd / Fluent Bit forward protocol (Message, Forward, PackedForward and "
    "CompressedPackedForward modes; chunk acks; shared-key handshake; TLS)",
    devmesh::kOptions, static_cast<uint32_t>(std::size(devmesh::kOptions)), DM_ACK_STAGES))
