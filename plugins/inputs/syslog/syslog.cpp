// syslog input: RFC 5424 and RFC 3164 messages over UDP (one datagram, one message), TCP and
// TLS (RFC 6587: octet counting or newline framing, told apart per frame by its first byte).
// Everything runs on the engine's loop: TCP and TLS through plugins/common/stream_server.hpp,
// UDP on a non-blocking socket watched by host->watch_new.
//
// Syslog has no acknowledgement: a record is submitted once its frame is read. Under
// backpressure (pause) no socket is read: TCP senders block on their full send buffers and
// lose nothing; UDP datagrams wait in the kernel's receive buffer (receive_buffer), and what
// overflows it is counted by the kernel (read with SO_MEMINFO after each burst and at resume)
// in syslog_udp_kernel_drops_total.
//
// Record mapping: PRI's severity → priority and level (record_columns.hpp), its facility →
// meta facility (RFC 5424 keyword); HOSTNAME → host (the peer's address when absent);
// APP-NAME or the BSD tag → service ("unknown" when absent); PROCID → meta procid (an integer
// when it is one), MSGID → meta msgid; each SD-PARAM → meta sd.<SD-ID>.<PARAM-NAME>, an
// integer or decimal number when the value is exactly one, else a string; a parameter repeated
// within an element is a JSON array of its values' text; an element without parameters is
// sd.<SD-ID> = "". A message that does not parse keeps its whole text as message, gets
// meta parse_error, and counts in syslog_parse_failures_total; without a PRI it is user.notice
// (RFC 3164 4.3.3).
#include <arpa/inet.h>
#include <linux/sock_diag.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <devmesh/plugin.hpp>
#include <record_columns.hpp>
#include <stream_server.hpp>
#include <utf8.hpp>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "syslog_message.hpp"

namespace devmesh {
namespace {

struct Settings {
  const char *listen = nullptr;
  const char *mode = nullptr;
  int64_t max_message_size = 0;
  int64_t max_connections = 0;
  int64_t receive_buffer = 0;
  int64_t idle_timeout_ms = 0;
  dm_tls_config tls{};
};

const char *const kModes[] = {"udp", "tcp", nullptr};

const dm_option kOptions[] = {
    {"listen", DM_OPT_STRING, DM_OPT_LISTEN | DM_OPT_BIND, "127.0.0.1:5140", 0, 0, nullptr,
     "address and port to receive on (host:port or [v6]:port; 0.0.0.0:port for every address)",
     offsetof(Settings, listen)},
    {"mode", DM_OPT_STRING, DM_OPT_BIND, "udp", 0, 0, kModes,
     "udp: one message per datagram; tcp: a stream framed by octet counting or newlines "
     "(RFC 6587, per frame), over TLS when tls.cert is set",
     offsetof(Settings, mode)},
    // RFC 5425 asks receivers to take at least 8 KiB over TLS and rsyslog's default
    // $MaxMessageSize is 8 KiB; 64 KiB is the largest UDP payload, so nothing a sender can put
    // in one datagram is cut by default.
    {"max_message_size", DM_OPT_SIZE, DM_OPT_BOUNDED | DM_OPT_BIND, "64KiB", 480,
     16.0 * 1024 * 1024, nullptr,
     "longest message in bytes: a longer frame keeps its first max_message_size bytes and the "
     "rest is discarded (counted in syslog_frames_cut_total)",
     offsetof(Settings, max_message_size)},
    {"max_connections", DM_OPT_INT, DM_OPT_BOUNDED | DM_OPT_BIND, "256", 1, 100000, nullptr,
     "tcp: most connections open at once; a peer beyond them is closed at once (counted in "
     "syslog_connections_refused_total)",
     offsetof(Settings, max_connections)},
    {"receive_buffer", DM_OPT_SIZE, DM_OPT_BOUNDED | DM_OPT_BIND, "0", 0, 1024.0 * 1024 * 1024,
     nullptr,
     "udp: the socket's receive buffer (SO_RCVBUF; the kernel caps it at net.core.rmem_max); "
     "datagrams that overflow it are lost and counted in syslog_udp_kernel_drops_total; 0 "
     "keeps the system's default",
     offsetof(Settings, receive_buffer)},
    {"idle_timeout", DM_OPT_DURATION, DM_OPT_BOUNDED | DM_OPT_BIND, "10m", 100, 7 * 86400000.0,
     nullptr,
     "tcp: a connection that sends nothing (or never finishes its TLS handshake) for this "
     "long is closed (counted in syslog_connections_closed_total{reason=\"idle\"}); time "
     "paused by backpressure does not count",
     offsetof(Settings, idle_timeout_ms)},
    DM_TLS_OPTIONS(Settings, tls),
};

constexpr std::string_view kSource = "syslog", kUnknown = "unknown";
constexpr size_t kUdpBurst = 256;  // datagrams per wake-up, so UDP cannot hold the loop
// Datagrams per recvmmsg: one syscall for up to 16 (a recvmsg each cost more than parsing a
// short line). Each has a slot of the largest datagram kept, so this is up to 1 MiB of buffer,
// of which only the pages large datagrams reach become resident.
constexpr size_t kUdpSlots = 16;

// The host part of "addr:port" or "[v6]:port".
std::string host_of(const std::string &peer) {
  if (!peer.empty() && peer.front() == '[') {
    const size_t close = peer.find(']');
    return close == std::string::npos ? peer : peer.substr(1, close - 1);
  }
  const size_t colon = peer.rfind(':');
  return colon == std::string::npos ? peer : peer.substr(0, colon);
}

// JSON number text that reads back as the same value and the same text: -?(0|[1-9][0-9]*)
// with an optional fraction; at most 18 digits before it, so an integer fits an int64.
bool plain_number(std::string_view v, bool &integer) {
  size_t i = v.size() && v[0] == '-' ? 1 : 0;
  const size_t start = i;
  while (i < v.size() && v[i] >= '0' && v[i] <= '9') ++i;
  const size_t digits = i - start;
  if (digits == 0 || digits > 18 || (v[start] == '0' && digits > 1)) return false;
  integer = i == v.size();
  if (integer) return true;
  if (v[i] != '.' || i + 1 == v.size()) return false;
  for (++i; i < v.size(); ++i)
    if (v[i] < '0' || v[i] > '9') return false;
  return true;
}

void json_escape(std::string_view s, std::string &out) {
  out += '"';
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  out += '"';
}

// Per-connection framing state.
struct ConnState {
  std::string peer_host;
  std::string partial;      // the start of a frame not complete yet
  uint64_t skip = 0;        // bytes of a cut octet-counted frame still to discard
  bool discarding = false;  // a cut newline frame: discard up to its LF
  size_t lf_scanned = 0;    // bytes of `partial` already known to hold no LF
};

class SyslogInput : public StreamHandler {
 public:
  SyslogInput(const dm_host_api *host, dm_instance *inst, const dm_config *cfg)
      : host_(host), inst_(inst), server_(host, inst, *this) {
    ConfigProblems problems(host, inst);
    cfg_ = bound_config<Settings>(host, cfg);
    listen_ = cfg_.listen ? cfg_.listen : "";
    udp_ = std::string_view(cfg_.mode ? cfg_.mode : "udp") == "udp";
    max_message_ = static_cast<size_t>(cfg_.max_message_size);
    auto set = [](const char *s) { return s != nullptr && *s != '\0'; };
    if (udp_ && (set(cfg_.tls.cert) || set(cfg_.tls.key) || set(cfg_.tls.ca)))
      problems.add("tls.cert",
                   "TLS needs mode: tcp (syslog over UDP has no TLS; DTLS is not "
                   "supported)");
    if (set(cfg_.tls.cert) != set(cfg_.tls.key))
      problems.add(set(cfg_.tls.cert) ? "tls.key" : "tls.cert", "tls.cert and tls.key go together");
    if (!udp_ && set(cfg_.tls.ca) && !set(cfg_.tls.cert))
      problems.add("tls.ca", "needs tls.cert and tls.key (mutual TLS is on top of TLS)");
    if (udp_ && cfg_.max_message_size > 65536)
      host->log(inst, DM_LOG_INFO,
                "max_message_size above 64KiB has no effect over UDP (the largest datagram)");
    problems.refuse_if_any();

    boot_ns_ = host->now_ns();
    const char *transport = udp_                 ? "transport=\"udp\""
                            : set(cfg_.tls.cert) ? "transport=\"tls\""
                                                 : "transport=\"tcp\"";
    m_messages_ = host->metric_counter(inst, "syslog_messages_total",
                                       "messages received and submitted as records", transport);
    m_bytes_ = host->metric_counter(inst, "syslog_bytes_total",
                                    "bytes of messages received (framing excluded)", transport);
    static constexpr const char *kFailures[] = {"", "reason=\"pri\"", "reason=\"header\"",
                                                "reason=\"structured_data\""};
    for (int i = 1; i < 4; ++i)
      m_failures_[i] = host->metric_counter(
          inst, "syslog_parse_failures_total",
          "messages kept whole as their message because they did not parse (pri: no valid "
          "<PRI>; header: an RFC 5424 header field; structured_data)",
          kFailures[i]);
    m_cut_ = host->metric_counter(
        inst, "syslog_frames_cut_total",
        "frames longer than max_message_size (kept cut to it) or ended by the connection's close "
        "before their octet count",
        nullptr);
    m_bad_count_ = host->metric_counter(
        inst, "syslog_invalid_octet_counts_total",
        "tcp frames starting with a digit that is no valid octet count (read up to the next LF "
        "instead)",
        nullptr);
    m_utf8_ =
        host->metric_counter(inst, "syslog_utf8_cleaned_total",
                             "messages whose invalid UTF-8 bytes were replaced by U+FFFD", nullptr);
    m_dropped_ = host->metric_counter(
        inst, "syslog_messages_dropped_total",
        "messages read but not kept: the engine was stopping when they were submitted, or "
        "they waited for the pipeline to resume when it stopped",
        nullptr);
    if (udp_) {
      m_kernel_drops_ = host->metric_counter(
          inst, "syslog_udp_kernel_drops_total",
          "datagrams the kernel dropped because the socket's receive buffer was full "
          "(the socket's SO_MEMINFO drop count, read after each burst of datagrams and at "
          "resume; includes drops while the input was paused)",
          nullptr);
    } else {
      m_conns_ = host->metric_gauge(inst, "syslog_connections", "tcp connections open", nullptr);
      m_refused_ =
          host->metric_counter(inst, "syslog_connections_refused_total",
                               "peers closed at once because max_connections were open", nullptr);
      m_closed_idle_ =
          host->metric_counter(inst, "syslog_connections_closed_total",
                               "connections closed by this side, by reason", "reason=\"idle\"");
      m_tls_failed_ = host->metric_counter(
          inst, "syslog_tls_handshakes_failed_total",
          "TLS peers gone before their handshake completed (refused version or certificate, "
          "or the peer left)",
          nullptr);
    }
  }

  ~SyslogInput() override {
    stop();
    for (dm_batch *b : pending_) host_->batch_free(b);
  }

  int start() {
    std::string error;
    if (udp_) {
      if (!open_udp(error)) {
        host_->log(inst_, DM_LOG_ERROR, "%s", error.c_str());
        return 1;
      }
      host_->log(inst_, DM_LOG_INFO, "receiving syslog on udp %s", listen_.c_str());
      return 0;
    }
    server_.set_max_connections(static_cast<size_t>(cfg_.max_connections));
    server_.set_read_chunk(std::max<size_t>(64 * 1024, max_message_ + 16));
    server_.set_idle_timeout(static_cast<uint64_t>(cfg_.idle_timeout_ms));
    if (!server_.listen(listen_, cfg_.tls, error)) {
      host_->log(inst_, DM_LOG_ERROR, "%s", error.c_str());
      return 1;
    }
    host_->log(inst_, DM_LOG_INFO, "receiving syslog on %s %s",
               cfg_.tls.cert && *cfg_.tls.cert ? "tls" : "tcp", listen_.c_str());
    return 0;
  }

  void stop() {
    stopping_ = true;
    // Read under backpressure and never taken: the engine takes nothing more now. Said and
    // counted, not dropped silently.
    uint64_t held = 0;
    for (dm_batch *b : pending_) held += b->count;
    if (held > 0) {
      host_->metric_add(m_dropped_, static_cast<double>(held));
      host_->log(inst_, DM_LOG_WARN,
                 "%llu messages read while the pipeline was paused were not taken before the "
                 "stop (counted in syslog_messages_dropped_total)",
                 static_cast<unsigned long long>(held));
    }
    for (dm_batch *b : pending_) host_->batch_free(b);
    pending_.clear();
    server_.stop();
    if (udp_watch_ != nullptr) host_->watch_free(udp_watch_);
    udp_watch_ = nullptr;
    if (udp_fd_ >= 0) ::close(udp_fd_);
    udp_fd_ = -1;
  }

  void pause() {
    paused_ = true;
    apply_reading();
  }

  void resume() {
    paused_ = false;
    // What was read before the pause goes first, in order.
    while (!pending_.empty()) {
      uint64_t ticket;
      const int rc = host_->submit(inst_, pending_.front(), &ticket);
      if (rc == DM_ERR_FULL) return;
      if (rc != DM_OK) {
        host_->metric_add(m_dropped_, pending_.front()->count);
        host_->batch_free(pending_.front());
      }
      pending_.erase(pending_.begin());
    }
    if (udp_) count_kernel_drops();
    apply_reading();
  }

  int health(char *buf, size_t cap) {
    if (udp_ || server_.connections() < static_cast<size_t>(cfg_.max_connections)) return 0;
    std::snprintf(buf, cap, "max_connections (%lld) reached: peers are being refused",
                  static_cast<long long>(cfg_.max_connections));
    return 1;
  }

  // ---- StreamHandler ----------------------------------------------------------------------

  void on_open(StreamConnection &c) override {
    auto *st = new ConnState;
    st->peer_host = host_of(c.peer());
    c.user = st;
    host_->metric_set(m_conns_, static_cast<double>(server_.connections()));
  }

  void on_handshake_failed(const std::string &peer, const std::string &reason) override {
    if (stopping_) return;
    if (reason == StreamServer::kIdleReason) {
      host_->metric_add(m_closed_idle_, 1);
      return;
    }
    host_->metric_add(m_tls_failed_, 1);
    host_->log(inst_, DM_LOG_DEBUG, "TLS handshake with %s failed: %s", peer.c_str(),
               reason.c_str());
  }

  void on_refused(const std::string &peer) override {
    host_->metric_add(m_refused_, 1);
    // Once per burst of refusals, not per peer: a flood must not flood the log too.
    if (!refusing_logged_)
      host_->log(inst_, DM_LOG_WARN, "max_connections (%lld) open: refusing %s and others",
                 static_cast<long long>(cfg_.max_connections), peer.c_str());
    refusing_logged_ = true;
  }

  // The server calls back from the loop's watch: nothing may escape into libuv.
  void on_data(StreamConnection &c, const char *data, size_t len) override {
    guarded(host_, inst_, 0, [&] { return read_frames(c, data, len), 0; });
  }

  void read_frames(StreamConnection &c, const char *data, size_t len) {
    auto *st = static_cast<ConnState *>(c.user);
    if (st == nullptr) return;
    Frames frames(this, st->peer_host);
    std::string_view in(data, len);
    if (!st->partial.empty()) {
      st->partial.append(data, len);
      in = st->partial;
    }
    size_t pos = 0;
    bool more = true;
    while (more && pos < in.size()) more = next_frame(*st, in, pos, frames);
    if (st->partial.empty()) {
      st->partial.assign(in.substr(pos));
    } else {
      st->partial.erase(0, pos);
    }
    frames.submit();
  }

  void on_close(StreamConnection &c, const std::string &reason) override {
    auto *st = static_cast<ConnState *>(c.user);
    c.user = nullptr;
    if (st == nullptr) return;
    guarded(host_, inst_, 0, [&] { return last_frame(c, st, reason), 0; });
    delete st;
    host_->metric_set(m_conns_, static_cast<double>(server_.connections() - 1));
    refusing_logged_ = false;
  }

  void last_frame(StreamConnection &c, ConnState *st, const std::string &reason) {
    if (reason == StreamServer::kIdleReason) {
      host_->metric_add(m_closed_idle_, 1);
    } else if (!reason.empty() && reason != "server stopped") {
      host_->log(inst_, DM_LOG_DEBUG, "connection from %s closed: %s", c.peer().c_str(),
                 reason.c_str());
    }
    // A last frame without its LF is a message; one short of its octet count was cut.
    if (!st->partial.empty() && !stopping_) {
      Frames frames(this, st->peer_host);
      std::string_view rest = st->partial;
      if (rest[0] >= '0' && rest[0] <= '9' && rest.find(' ') != std::string_view::npos &&
          octet_count(rest).first > 0) {
        host_->metric_add(m_cut_, 1);
        rest.remove_prefix(rest.find(' ') + 1);
      }
      if (!st->discarding) frames.add(rest);
      frames.submit();
    }
  }

 private:
  // The records of one read, in one batch.
  class Frames {
   public:
    Frames(SyslogInput *in, const std::string &peer) : in_(in), peer_(peer) {}
    ~Frames() {
      if (batch_ != nullptr) in_->host_->batch_free(batch_);
    }
    void add(std::string_view frame) { in_->add_record(*this, frame); }
    void submit() {
      if (batch_ == nullptr) return;
      // Counted once per read, not per record: two atomic adds per record cost more than the
      // parse of a short one.
      in_->host_->metric_add(in_->m_messages_, static_cast<double>(batch_->count));
      in_->host_->metric_add(in_->m_bytes_, static_cast<double>(bytes_));
      in_->submit(batch_);
      batch_ = nullptr;
    }

   private:
    friend class SyslogInput;
    SyslogInput *in_;
    const std::string &peer_;
    dm_batch *batch_ = nullptr;
    dm_str peer_copy_{};
    uint64_t now_ = 0;  // the arrival time of the read's records
    uint64_t bytes_ = 0;
  };

  // RFC 6587's MSG-LEN at the start of s: (length, bytes up to and with its space); (0, 0)
  // when s is not one, (0, 1) when more bytes are needed to tell.
  static std::pair<uint64_t, size_t> octet_count(std::string_view s) {
    uint64_t n = 0;
    size_t i = 0;
    while (i < s.size() && i < 10 && s[i] >= '0' && s[i] <= '9') n = n * 10 + (s[i++] - '0');
    if (i == s.size() && i < 10) return {0, 1};
    if (i == 0 || i >= s.size() || s[i] != ' ' || n == 0 || s[0] == '0') return {0, 0};
    return {n, i + 1};
  }

  // Takes the next frame of `in` from pos into frames; false when the rest must wait for more.
  bool next_frame(ConnState &st, std::string_view in, size_t &pos, Frames &frames) {
    if (st.skip > 0) {
      const size_t n = std::min<uint64_t>(st.skip, in.size() - pos);
      pos += n;
      st.skip -= n;
      return st.skip == 0;
    }
    if (st.discarding) {
      const size_t lf = in.find('\n', pos);
      if (lf == std::string_view::npos) {
        pos = in.size();
        return false;
      }
      pos = lf + 1;
      st.discarding = false;
      return true;
    }
    if (in[pos] >= '0' && in[pos] <= '9') {
      const auto [len, head] = octet_count(in.substr(pos));
      if (len == 0 && head == 1) return false;  // the count is not complete yet
      if (len > 0) {
        const size_t avail = in.size() - pos - head;
        if (len <= max_message_) {
          if (avail < len) return false;
          frames.add(in.substr(pos + head, len));
          pos += head + len;
          return true;
        }
        if (avail < max_message_) return false;
        host_->metric_add(m_cut_, 1);
        frames.add(in.substr(pos + head, max_message_));
        pos += head + max_message_;
        st.skip = len - max_message_;
        return true;
      }
      // (once per frame: a line that waits for its LF over several reads was counted already)
      if (pos != 0 || st.lf_scanned == 0) host_->metric_add(m_bad_count_, 1);
    }
    // A long line arriving in many reads is scanned once, not once per read.
    const size_t from = pos == 0 ? std::min(st.lf_scanned, in.size()) : pos;
    const size_t lf = in.find('\n', from);
    if (lf == std::string_view::npos) {
      if (in.size() - pos <= max_message_) {
        st.lf_scanned = in.size() - pos;
        return false;
      }
      host_->metric_add(m_cut_, 1);
      frames.add(in.substr(pos, max_message_));
      pos = in.size();
      st.discarding = true;
      st.lf_scanned = 0;
      return false;
    }
    st.lf_scanned = 0;
    std::string_view line = in.substr(pos, lf - pos);
    pos = lf + 1;
    if (line.size() > max_message_) {
      host_->metric_add(m_cut_, 1);
      line = line.substr(0, max_message_);
    }
    frames.add(line);
    return true;
  }

  void add_record(Frames &f, std::string_view frame) {
    while (!frame.empty() && (frame.back() == '\n' || frame.back() == '\r' || frame.back() == '\0'))
      frame.remove_suffix(1);
    if (frame.empty()) return;
    if (f.batch_ == nullptr) {
      f.batch_ = host_->batch_new(inst_, 64);
      f.peer_copy_ = host_->arena_copy(f.batch_, f.peer_.data(), f.peer_.size());
      f.now_ = host_->now_ns();
    }
    dm_batch *b = f.batch_;
    const std::string_view clean = valid_utf8(frame, utf8_scratch_);
    if (clean.data() != frame.data()) host_->metric_add(m_utf8_, 1);
    const dm_str text = host_->arena_copy(b, clean.data(), clean.size());
    const uint64_t now = f.now_;
    syslog::parse(sv(text), static_cast<int64_t>(now), msg_);

    dm_record *r = host_->batch_add(b);
    const int pri = msg_.pri >= 0 ? msg_.pri : 13;  // RFC 3164 4.3.3: user.notice
    r->timestamp_ns = msg_.has_timestamp ? msg_.timestamp_ns : static_cast<int64_t>(now);
    r->priority = static_cast<int8_t>(pri & 7);
    r->level = level_from_priority(pri & 7);
    r->source = str(kSource);
    r->host = msg_.hostname.empty() ? f.peer_copy_ : str(msg_.hostname);
    r->service = msg_.app_name.empty() ? str(kUnknown) : str(msg_.app_name);
    r->message = str(msg_.message);
    uint64_t id[2] = {boot_ns_, ++sequence_};
    host_->hash128(id, sizeof id, r->event_id);

    meta(b, r, "facility", syslog::facility_name(pri >> 3), DM_META_STRING);
    if (!msg_.procid.empty()) {
      bool integer = false;
      const bool number = plain_number(msg_.procid, integer) && integer && msg_.procid[0] != '-';
      meta(b, r, "procid", msg_.procid, number ? DM_META_INT : DM_META_STRING);
    }
    if (!msg_.msgid.empty()) meta(b, r, "msgid", msg_.msgid, DM_META_STRING);
    if (!msg_.sd.empty()) structured_data(b, r);
    if (msg_.failure != syslog::Failure::none) {
      static constexpr std::string_view kWhy[] = {"", "no valid PRI", "malformed RFC 5424 header",
                                                  "malformed RFC 5424 structured data"};
      const int i = static_cast<int>(msg_.failure);
      host_->metric_add(m_failures_[i], 1);
      meta(b, r, "parse_error", kWhy[i], DM_META_STRING);
    }
    f.bytes_ += frame.size();
  }

  void meta(dm_batch *b, dm_record *r, std::string_view key, std::string_view value,
            uint32_t type) {
    host_->meta_set(b, r, str(key), str(value), type);
  }

  // sd.<id>.<name>: typed when the value is exactly a number; a repeated name is an array.
  void structured_data(dm_batch *b, dm_record *r) {
    const auto &sd = msg_.sd;
    for (size_t i = 0; i < sd.size(); ++i) {
      key_.assign("sd.").append(sd[i].id);
      if (sd[i].name.empty()) {
        meta(b, r, key_, "", DM_META_STRING);
        continue;
      }
      key_.append(".").append(sd[i].name);
      bool seen = false, repeated = false;
      for (size_t j = 0; j < sd.size(); ++j) {
        if (sd[j].id != sd[i].id || sd[j].name != sd[i].name) continue;
        if (j < i) seen = true;
        if (j > i) repeated = true;
      }
      if (seen) continue;  // written with the first occurrence
      if (repeated) {
        json_.assign("[");
        for (size_t j = i; j < sd.size(); ++j) {
          if (sd[j].id != sd[i].id || sd[j].name != sd[i].name) continue;
          if (json_.size() > 1) json_ += ',';
          json_escape(syslog::unescape(sd[j].raw_value, scratch_), json_);
        }
        json_ += ']';
        meta(b, r, key_, json_, DM_META_JSON);
        continue;
      }
      const std::string_view value = syslog::unescape(sd[i].raw_value, scratch_);
      bool integer = false;
      const uint32_t type =
          plain_number(value, integer) ? (integer ? DM_META_INT : DM_META_FLOAT) : DM_META_STRING;
      meta(b, r, key_, value, type);
    }
  }

  void submit(dm_batch *b) {
    if (!pending_.empty() || paused_) {
      pending_.push_back(b);
      apply_reading();
      return;
    }
    uint64_t ticket;
    const int rc = host_->submit(inst_, b, &ticket);
    if (rc == DM_OK) return;
    if (rc == DM_ERR_FULL) {
      pending_.push_back(b);
      apply_reading();
      return;
    }
    host_->metric_add(m_dropped_, b->count);
    host_->batch_free(b);
  }

  // Reading stops while paused or while batches wait to be taken.
  void apply_reading() {
    const bool reading = !paused_ && pending_.empty() && !stopping_;
    if (udp_) {
      if (udp_watch_ != nullptr) host_->watch_set(udp_watch_, reading ? DM_READABLE : 0);
    } else if (reading) {
      server_.resume_all();
    } else {
      server_.pause_all();
    }
  }

  // ---- UDP ----------------------------------------------------------------------------------

  bool open_udp(std::string &error) {
    std::string host, port;
    const size_t colon = listen_.rfind(':');
    if (!listen_.empty() && listen_.front() == '[') {
      const size_t close = listen_.find(']');
      if (close == std::string::npos || close + 1 >= listen_.size()) {
        error = "listen " + listen_ + ": not an address";
        return false;
      }
      host = listen_.substr(1, close - 1);
      port = listen_.substr(close + 2);
    } else if (colon == std::string::npos) {
      port = listen_;
    } else {
      host = listen_.substr(0, colon);
      port = listen_.substr(colon + 1);
    }
    // As the engine and stream_server.hpp read an address: no host is loopback, not "any".
    if (host.empty() || host == "localhost") host = "127.0.0.1";
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if (const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
      error = "listen " + listen_ + ": " + gai_strerror(rc);
      return false;
    }
    std::string why;
    for (addrinfo *a = res; a != nullptr && udp_fd_ < 0; a = a->ai_next) {
      udp_fd_ = socket(a->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (udp_fd_ < 0) continue;
      if (cfg_.receive_buffer > 0) {
        // SO_RCVBUFFORCE passes net.core.rmem_max when we may (CAP_NET_ADMIN); else the capped
        // SO_RCVBUF, and the log says what the kernel gave (it reports twice the size asked).
        const int size = static_cast<int>(std::min<int64_t>(cfg_.receive_buffer, INT32_MAX / 2));
        if (setsockopt(udp_fd_, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
          setsockopt(udp_fd_, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        int got = 0;
        socklen_t got_len = sizeof got;
        if (getsockopt(udp_fd_, SOL_SOCKET, SO_RCVBUF, &got, &got_len) == 0 && got / 2 < size)
          host_->log(inst_, DM_LOG_WARN,
                     "receive_buffer: the kernel gave %d bytes of the %d asked (raise "
                     "net.core.rmem_max)",
                     got / 2, size);
      }
      if (bind(udp_fd_, a->ai_addr, a->ai_addrlen) != 0) {
        why = std::strerror(errno);
        ::close(udp_fd_);
        udp_fd_ = -1;
      }
    }
    freeaddrinfo(res);
    if (udp_fd_ < 0) {
      error = "listen " + listen_ + " (udp): " + (why.empty() ? "no usable address" : why);
      return false;
    }
    udp_slot_ = std::min<size_t>(max_message_, 65535) + 1;
    udp_buf_.reset(new char[udp_slot_ * kUdpSlots]);  // uninitialised: untouched pages stay free
    udp_watch_ = host_->watch_new(inst_, udp_fd_, &SyslogInput::on_udp_ready, this);
    if (udp_watch_ == nullptr) {
      error = "listen " + listen_ + ": cannot watch the socket";
      return false;
    }
    apply_reading();
    return true;
  }

  static void on_udp_ready(void *arg, int) {
    auto *self = static_cast<SyslogInput *>(arg);
    guarded(self->host_, self->inst_, 0, [&] { return self->read_udp(), 0; });
  }

  void read_udp() {
    std::unique_ptr<Frames> frames;
    std::string peer;
    sockaddr_storage last{};
    socklen_t last_len = 0;
    sockaddr_storage from[kUdpSlots];
    iovec iov[kUdpSlots];
    mmsghdr msgs[kUdpSlots];
    bool more = true;
    for (size_t taken = 0; more && taken < kUdpBurst && udp_fd_ >= 0;) {
      for (size_t k = 0; k < kUdpSlots; ++k) {
        iov[k] = iovec{udp_buf_.get() + k * udp_slot_, udp_slot_};
        msgs[k] = mmsghdr{};
        msgs[k].msg_hdr.msg_name = &from[k];
        msgs[k].msg_hdr.msg_namelen = sizeof from[k];
        msgs[k].msg_hdr.msg_iov = &iov[k];
        msgs[k].msg_hdr.msg_iovlen = 1;
      }
      // MSG_TRUNC: each msg_len is the datagram's whole length, so a cut one is seen and counted.
      const int got = recvmmsg(udp_fd_, msgs, kUdpSlots, MSG_TRUNC, nullptr);
      if (got <= 0) break;  // EAGAIN, or an error the next wake-up sees again
      more = static_cast<size_t>(got) == kUdpSlots;
      taken += static_cast<size_t>(got);
      for (int k = 0; k < got; ++k) {
        size_t len = msgs[k].msg_len;
        if (len > udp_slot_ - 1) {
          host_->metric_add(m_cut_, 1);
          len = udp_slot_ - 1;
        }
        if (len > max_message_) {
          host_->metric_add(m_cut_, 1);
          len = max_message_;
        }
        // One batch per sender within a burst: the peer's address is the host of records that
        // name none.
        const socklen_t name_len = msgs[k].msg_hdr.msg_namelen;
        if (frames == nullptr || name_len != last_len || std::memcmp(&from[k], &last, last_len)) {
          if (frames != nullptr) frames->submit();
          char text[INET6_ADDRSTRLEN] = "";
          if (from[k].ss_family == AF_INET)
            inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in *>(&from[k])->sin_addr, text,
                      sizeof text);
          else if (from[k].ss_family == AF_INET6)
            inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6 *>(&from[k])->sin6_addr, text,
                      sizeof text);
          frames.reset();
          peer = text;
          frames = std::make_unique<Frames>(this, peer);
          last = from[k];
          last_len = name_len;
        }
        // Datagrams already taken from the socket are all added, backpressure or not: the
        // pause only stops the next recvmmsg.
        frames->add(std::string_view(udp_buf_.get() + static_cast<size_t>(k) * udp_slot_, len));
      }
      if (paused_ || !pending_.empty()) break;
    }
    if (frames != nullptr) frames->submit();
    count_kernel_drops();
  }

  // The socket's drop count (datagrams the kernel could not queue: buffer full), one syscall
  // per burst rather than a control message per datagram (SO_RXQ_OVFL stamps a datagram with
  // the drops before it was queued, so drops after the last one queued would go unseen).
  void count_kernel_drops() {
    uint32_t info[SK_MEMINFO_VARS] = {};
    socklen_t len = sizeof info;
    if (udp_fd_ < 0 || getsockopt(udp_fd_, SOL_SOCKET, SO_MEMINFO, info, &len) != 0 ||
        len < (SK_MEMINFO_DROPS + 1) * sizeof(uint32_t))
      return;
    const uint32_t drops = info[SK_MEMINFO_DROPS];
    if (drops != kernel_drops_)
      host_->metric_add(m_kernel_drops_, static_cast<double>(drops - kernel_drops_));
    kernel_drops_ = drops;
  }

  const dm_host_api *host_;
  dm_instance *inst_;
  Settings cfg_{};
  std::string listen_;
  bool udp_ = true, paused_ = false, stopping_ = false, refusing_logged_ = false;
  size_t max_message_ = 65536;
  StreamServer server_;
  int udp_fd_ = -1;
  dm_watch *udp_watch_ = nullptr;
  std::unique_ptr<char[]> udp_buf_;  // kUdpSlots slots of udp_slot_ bytes
  size_t udp_slot_ = 0;
  uint32_t kernel_drops_ = 0;
  std::vector<dm_batch *> pending_;
  uint64_t boot_ns_ = 0, sequence_ = 0;
  syslog::Message msg_;
  std::string utf8_scratch_, scratch_, key_, json_;
  dm_metric *m_messages_ = nullptr, *m_bytes_ = nullptr, *m_failures_[4] = {}, *m_cut_ = nullptr,
            *m_bad_count_ = nullptr, *m_utf8_ = nullptr, *m_dropped_ = nullptr,
            *m_kernel_drops_ = nullptr, *m_conns_ = nullptr, *m_refused_ = nullptr,
            *m_closed_idle_ = nullptr, *m_tls_failed_ = nullptr;
};

}  // namespace
}  // namespace devmesh

DEVMESH_PLUGIN(devmesh::PluginAdapter<devmesh::SyslogInput>::describe(
    DM_INPUT, "syslog", "0.1.0",
    "syslog receiver: RFC 5424 and RFC 3164 over UDP, TCP (octet counting or newline framing) "
    "and TLS",
    devmesh::kOptions, sizeof(devmesh::kOptions) / sizeof(devmesh::kOptions[0])))
