// journal-fixture: writes real journal files for tests and benchmarks by piping journal export
// format into systemd-journal-remote; entries are numbered so a reader can check for gaps.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

extern char **environ;

namespace devmesh {
namespace {

constexpr const char *kJournalRemote = "/lib/systemd/systemd-journal-remote";

struct Options {
  std::string output;  // DIR/NAME.journal
  uint64_t count = 1000;
  uint64_t start = 1;
  std::vector<std::string> units{"app.service"};  // empty: no _SYSTEMD_UNIT
  std::vector<std::string> priorities{"6"};       // empty: no PRIORITY
  size_t message_min = 0, message_max = 0;        // 0: just "entry <seq>"
  uint64_t binary_every = 0;
  uint64_t kernel_every = 0;
  std::string hostname = "fixture-host";
  std::string boot_id = "0123456789abcdef0123456789abcdef";
  std::string identifier = "fixture";
  std::string comm = "fixture";
  std::string transport = "journal";
  std::vector<std::pair<std::string, std::string>> fields;
  std::set<std::string> omit;
  uint64_t realtime_base = 1764359740000000;  // 2025-11-28T19:55:40Z, the seed's example day
  uint64_t step_us = 1000;
  std::optional<std::string> message;  // every entry's MESSAGE instead of "entry <seq>"
  std::vector<std::string> messages;   // --messages-from: entry seq takes line (seq-1) % size
  std::optional<uint64_t> pid;         // every entry's _PID instead of 1000 + seq % 7
  bool export_only = false;
  std::string journal_remote = kJournalRemote;
};

void usage(FILE *to) {
  std::fprintf(
      to,
      "usage: journal-fixture -o DIR/NAME.journal [options]\n"
      "Writes numbered journal entries into a journal file through systemd-journal-remote.\n"
      "Entry <seq> has MESSAGE \"entry <seq>\" (padded to --message-size), SEQ=<seq>,\n"
      "__REALTIME_TIMESTAMP = realtime-base + seq*step and __MONOTONIC_TIMESTAMP = seq*step,\n"
      "so a second run with a later --start continues the same timeline (same file: appended;\n"
      "new file in the same directory: interleaved in order by readers).\n"
      "  -o, --output FILE       journal file to write or append to (must end in .journal)\n"
      "  --count N               entries to write (default 1000)\n"
      "  --start N               sequence number of the first entry (default 1)\n"
      "  --units A,B,...         _SYSTEMD_UNIT values cycled over entries (default app.service);\n"
      "                          '-' writes none\n"
      "  --priorities P,Q,...    PRIORITY values cycled over entries (default 6); '-' writes none\n"
      "  --message TEXT          MESSAGE TEXT on every entry instead of \"entry <seq>\" (with\n"
      "                          --pid and --step 0: entries alike in all but SEQ, as a process\n"
      "                          repeating one line within a microsecond)\n"
      "  --messages-from FILE    MESSAGE of entry <seq>: line (seq-1) mod the lines of FILE (real\n"
      "                          log lines, e.g. Loghub's, for the patterns filter)\n"
      "  --pid N                 _PID N on every entry (default 1000 + seq %% 7)\n"
      "  --message-size N[-M]    MESSAGE length in bytes (fixed, or varying within N..M)\n"
      "  --binary-every N        every Nth entry gets a binary MESSAGE (NUL, newline, bytes\n"
      "                          that are not UTF-8)\n"
      "  --kernel-every N        every Nth entry comes from the kernel transport (no unit)\n"
      "  --hostname NAME         _HOSTNAME (default fixture-host)\n"
      "  --boot-id HEX32         _BOOT_ID (default 0123456789abcdef0123456789abcdef)\n"
      "  --identifier NAME       SYSLOG_IDENTIFIER (default fixture)\n"
      "  --comm NAME             _COMM (default fixture)\n"
      "  --transport NAME        _TRANSPORT (default journal)\n"
      "  --field NAME=VALUE      an extra field on every entry (repeatable)\n"
      "  --omit NAME             leave out one of the default fields (repeatable)\n"
      "  --realtime-base USEC    realtime of sequence 0 (default 1764359740000000)\n"
      "  --step USEC             microseconds between entries (default 1000; 0: every entry\n"
      "                          of one instant, as a burst journald stamps alike)\n"
      "  --export                print the export stream on stdout, run nothing\n"
      "  --journal-remote PATH   default %s\n",
      kJournalRemote);
}

[[noreturn]] void die(const std::string &why) {
  std::fprintf(stderr, "journal-fixture: %s\n", why.c_str());
  std::exit(2);
}

uint64_t parse_u64(std::string_view flag, std::string_view v) {
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || p != v.data() + v.size())
    die(std::string(flag) + ": '" + std::string(v) + "' is not a number");
  return n;
}

std::vector<std::string> split_list(std::string_view v) {
  std::vector<std::string> out;
  if (v == "-" || v.empty()) return out;
  for (size_t at; (at = v.find(',')) != std::string_view::npos; v.remove_prefix(at + 1))
    out.emplace_back(v.substr(0, at));
  out.emplace_back(v);
  return out;
}

bool valid_field_name(std::string_view n) {
  if (n.empty() || n.size() > 64 || (n[0] >= '0' && n[0] <= '9')) return false;
  for (char c : n)
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
  return true;
}

Options parse(int argc, char **argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) die(std::string(a) + " needs a value");
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      usage(stdout);
      std::exit(0);
    } else if (a == "-o" || a == "--output") {
      o.output = value();
    } else if (a == "--count") {
      o.count = parse_u64(a, value());
    } else if (a == "--start") {
      o.start = parse_u64(a, value());
    } else if (a == "--units") {
      o.units = split_list(value());
    } else if (a == "--priorities") {
      o.priorities = split_list(value());
      for (auto &p : o.priorities)
        if (p.empty()) die("--priorities: empty item");
    } else if (a == "--message") {
      o.message = std::string(value());
    } else if (a == "--messages-from") {
      const std::string path(value());
      std::ifstream in(path);
      if (!in) die("--messages-from: cannot read " + path);
      for (std::string line; std::getline(in, line);)
        if (!line.empty()) o.messages.push_back(line);
      if (o.messages.empty()) die("--messages-from: no lines in " + path);
    } else if (a == "--pid") {
      o.pid = parse_u64(a, value());
    } else if (a == "--message-size") {
      const std::string_view v = value();
      const size_t dash = v.find('-');
      o.message_min = parse_u64(a, v.substr(0, dash));
      o.message_max =
          dash == std::string_view::npos ? o.message_min : parse_u64(a, v.substr(dash + 1));
      if (o.message_max < o.message_min) die("--message-size: N-M needs N <= M");
    } else if (a == "--binary-every") {
      o.binary_every = parse_u64(a, value());
    } else if (a == "--kernel-every") {
      o.kernel_every = parse_u64(a, value());
    } else if (a == "--hostname") {
      o.hostname = value();
    } else if (a == "--boot-id") {
      o.boot_id = value();
      if (o.boot_id.size() != 32 ||
          o.boot_id.find_first_not_of("0123456789abcdef") != std::string::npos)
        die("--boot-id: 32 lowercase hex digits expected");
    } else if (a == "--identifier") {
      o.identifier = value();
    } else if (a == "--comm") {
      o.comm = value();
    } else if (a == "--transport") {
      o.transport = value();
    } else if (a == "--field") {
      const std::string_view v = value();
      const size_t eq = v.find('=');
      if (eq == std::string_view::npos || !valid_field_name(v.substr(0, eq)))
        die("--field: NAME=VALUE with NAME of A-Z, 0-9 and _ expected, not '" + std::string(v) +
            "'");
      o.fields.emplace_back(v.substr(0, eq), v.substr(eq + 1));
    } else if (a == "--omit") {
      o.omit.emplace(value());
    } else if (a == "--realtime-base") {
      o.realtime_base = parse_u64(a, value());
    } else if (a == "--step") {
      o.step_us = parse_u64(a, value());
    } else if (a == "--export") {
      o.export_only = true;
    } else if (a == "--journal-remote") {
      o.journal_remote = value();
    } else {
      usage(stderr);
      die("unknown argument '" + std::string(a) + "'");
    }
  }
  if (!o.export_only) {
    if (o.output.empty()) die("-o DIR/NAME.journal is required (or --export)");
    if (o.output.size() <= 8 || o.output.compare(o.output.size() - 8, 8, ".journal") != 0)
      die("--output: the file name must end in .journal (systemd-journal-remote requires it)");
  }
  return o;
}

// Builds the export stream one entry at a time into a reused buffer.
class ExportWriter {
 public:
  explicit ExportWriter(const Options &o) : o_(o) {}

  const std::string &entry(uint64_t seq) {
    out_.clear();
    const bool kernel = o_.kernel_every && seq % o_.kernel_every == 0;
    num("__REALTIME_TIMESTAMP", o_.realtime_base + seq * o_.step_us);
    // At least 1: a monotonic stamp of 0 reads as "none" to some tools.
    num("__MONOTONIC_TIMESTAMP", std::max<uint64_t>(1, seq * o_.step_us));
    text("_BOOT_ID", o_.boot_id);
    text("_HOSTNAME", o_.hostname);
    text("_TRANSPORT", kernel ? "kernel" : o_.transport);
    if (kernel) {
      text("SYSLOG_IDENTIFIER", "kernel");
    } else {
      if (!o_.units.empty()) text("_SYSTEMD_UNIT", o_.units[seq % o_.units.size()]);
      text("SYSLOG_IDENTIFIER", o_.identifier);
      text("_COMM", o_.comm);
      num("_PID", o_.pid ? *o_.pid : 1000 + seq % 7);
    }
    text("SYSLOG_FACILITY", kernel ? "0" : "3");
    if (!o_.priorities.empty()) text("PRIORITY", o_.priorities[seq % o_.priorities.size()]);
    num("SEQ", seq);
    for (const auto &[k, v] : o_.fields) text(k, v);
    message(seq);
    out_ += '\n';  // an empty line ends the entry
    return out_;
  }

 private:
  void text(std::string_view k, std::string_view v) {
    if (o_.omit.count(std::string(k))) return;
    out_.append(k).append(1, '=').append(v).append(1, '\n');
  }
  void num(std::string_view k, uint64_t v) {
    char buf[24];
    auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
    text(k, std::string_view(buf, static_cast<size_t>(end - buf)));
  }

  void message(uint64_t seq) {
    if (o_.omit.count("MESSAGE")) return;
    msg_ = o_.message            ? *o_.message
           : o_.messages.empty() ? "entry " + std::to_string(seq)
                                 : o_.messages[(seq - 1) % o_.messages.size()];
    const bool binary = o_.binary_every && seq % o_.binary_every == 0;
    if (binary) msg_.append(" bin\x00\xff\xfe\n\x80\xc3(tail", 15);
    size_t want = o_.message_min;
    if (o_.message_max > o_.message_min)
      want += (seq * 2654435761u) % (o_.message_max - o_.message_min + 1);
    if (msg_.size() < want) {
      msg_ += ' ';
      for (size_t i = msg_.size(); i < want; ++i) msg_ += static_cast<char>('a' + i % 26);
    }
    if (!binary) return text("MESSAGE", msg_);
    // Binary fields: the name, a newline, the length as 64-bit little endian, the bytes.
    out_.append("MESSAGE\n");
    uint64_t len = msg_.size();
    for (int i = 0; i < 8; ++i) out_ += static_cast<char>((len >> (8 * i)) & 0xff);
    out_.append(msg_).append(1, '\n');
  }

  const Options &o_;
  std::string out_, msg_;
};

bool write_all(int fd, const char *p, size_t n) {
  while (n) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

int run(int argc, char **argv) {
  const Options o = parse(argc, argv);
  ExportWriter writer(o);
  signal(SIGPIPE, SIG_IGN);

  int fd = STDOUT_FILENO;
  pid_t child = -1;
  if (!o.export_only) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) die(std::string("pipe: ") + strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[0], STDIN_FILENO);
    const std::string out_arg = "--output=" + o.output;
    std::vector<char *> args{const_cast<char *>(o.journal_remote.c_str()),
                             const_cast<char *>(out_arg.c_str()), const_cast<char *>("-"), nullptr};
    const int rc =
        posix_spawn(&child, o.journal_remote.c_str(), &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) die("cannot run " + o.journal_remote + ": " + strerror(rc));
    close(p[0]);
    fd = p[1];
  }

  // Entries are written in chunks of ~1 MiB: one write per entry would dominate large runs.
  std::string chunk;
  bool ok = true;
  for (uint64_t seq = o.start; seq < o.start + o.count && ok; ++seq) {
    chunk += writer.entry(seq);
    if (chunk.size() >= (1u << 20)) {
      ok = write_all(fd, chunk.data(), chunk.size());
      chunk.clear();
    }
  }
  if (ok) ok = write_all(fd, chunk.data(), chunk.size());
  if (o.export_only) return ok ? 0 : 1;
  close(fd);

  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "journal-fixture: %s failed (status %d)\n", o.journal_remote.c_str(),
                 status);
    return 1;
  }
  if (!ok) die("writing to systemd-journal-remote failed");
  return 0;
}

}  // namespace
}  // namespace devmesh

int main(int argc, char **argv) {
  return devmesh::run(argc, argv);
}
