// tail's configuration: its options and what they say, checked (see tail_config.hpp).
#include "tail_config.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <stdexcept>
#include <string_view>

namespace devmesh::tail {
namespace {

const char *const kReadFrom[] = {"head", "tail", nullptr};

struct TailConfig {
  dm_strings path{};
  dm_strings exclude{};
  const char *read_from = nullptr;
  const char *state_file = nullptr;
  int64_t checkpoint_ms = 1000;
  int64_t max_line = 0;
  int64_t rotate_wait_ms = 0;
  int64_t batch = 0;
  int follow = 1;
};

using C = TailConfig;
const dm_option kOptions[] = {
    Option<DM_OPT_LIST>("path", &C::path,
                        "files to follow, as globs (wildcards * ? [..] in the file name only; the "
                        "directory must exist; a relative glob is relative to the working "
                        "directory). New files matching are followed as they appear (inotify on "
                        "the directory)")
        .required(),
    Option<DM_OPT_LIST>("exclude", &C::exclude,
                        "globs of paths not to follow, though path matches them (*.gz)"),
    Option<DM_OPT_STRING>(
        "read_from", &C::read_from,
        "where a file is first read at the first start (no state file yet): "
        "head (all of it) or tail (only lines written from now on; one being written then is "
        "read whole). A file "
        "that appears later, or that an existing state file does not know "
        "(it appeared while devmesh was stopped), is read from its head")
        .value("head")
        .allowed(kReadFrom),
    {"state_file", DM_OPT_PATH, DM_OPT_BIND | DM_OPT_MAKES_PARENT | DM_OPT_EXCLUSIVE, nullptr, 0, 0,
     nullptr,
     "file keeping, per file followed (inode and first-line fingerprint), the offset up to which "
     "every line was delivered; a restart resumes there, and finishes a file rotated away "
     "meanwhile. Without it every start begins at read_from",
     offsetof(TailConfig, state_file)},
    Option<DM_OPT_DURATION>("checkpoint_interval", &C::checkpoint_ms,
                            "at most one state file write per interval (and one at shutdown); 0 "
                            "writes after every acknowledgement. After a crash the re-read "
                            "overlap carries the same event_ids, which the stores absorb")
        .value("1s")
        .bounded(0, 3600000),
    Option<DM_OPT_SIZE>(
        "max_line_size", &C::max_line,
        "longest line kept: a longer one is cut to it (at a character boundary), marked with meta "
        "truncated: message and counted in tail_lines_cut_total; the rest of it, up to its "
        "newline, is skipped (counted in tail_bytes_skipped_total), never made into records")
        .value("64KiB")
        .bounded(256, 67108864),
    Option<DM_OPT_DURATION>("rotate_wait", &C::rotate_wait_ms,
                            "a file renamed away or deleted is kept open, and read, until it has "
                            "not grown for this long (a writer still holding it open finishes "
                            "its last lines), then closed; its last line without a newline is "
                            "then delivered")
        .value("5s")
        .bounded(0, 3600000),
    Option<DM_OPT_INT>("batch", &C::batch,
                       "most lines per submitted batch; one batch is read per loop turn")
        .value("1024")
        .bounded(1, 100000),
    Option<DM_OPT_BOOL>("follow", &C::follow,
                        "keep following; false reads every file matched at the start to its end "
                        "(its last line without a newline included), then the input finishes "
                        "(with service.exit_when_done the engine exits once all is delivered), "
                        "as Fluent Bit's exit_on_eof")
        .value("true"),
    {"service", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "service field of every record; default: the file's name up to its first dot "
     "(/var/log/nginx-access.log.1 gives nginx-access)",
     0},
    {"host", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "host field of every record; default: this machine's hostname", 0},
};

}  // namespace

const dm_option *options() {
  return kOptions;
}

uint32_t option_count() {
  return static_cast<uint32_t>(std::size(kOptions));
}

Settings read_settings(const dm_host_api *host, const dm_config *cfg, ConfigProblems &problems) {
  Settings s;
  const TailConfig c = bound_config<TailConfig>(host, cfg);
  const Config text{host, cfg};
  for (uint32_t i = 0; i < c.path.count; ++i) {
    const std::string p(sv_item(c.path, i));
    const std::string key = "path." + std::to_string(i);
    const size_t slash = p.rfind('/');
    Pattern pat;
    pat.dir = slash == std::string::npos ? "." : slash == 0 ? "/" : p.substr(0, slash);
    pat.name = slash == std::string::npos ? p : p.substr(slash + 1);
    struct stat st;
    if (pat.name.empty())
      problems.add(key, "'" + p + "' names a directory, not files (add /*.log)");
    else if (pat.dir.find_first_of("*?[") != std::string::npos)
      problems.add(key, "'" + p +
                            "': wildcards are only allowed in the file name, not in the "
                            "directory (each directory is watched for new files)");
    else if (::stat(pat.dir.c_str(), &st) != 0)
      problems.add(key, "directory " + pat.dir + ": " + strerror(errno));
    else if (!S_ISDIR(st.st_mode))
      problems.add(key, pat.dir + " is not a directory");
    s.patterns.push_back(std::move(pat));
  }
  if (c.path.count == 0) problems.add("path", "the list is empty");
  for (uint32_t i = 0; i < c.exclude.count; ++i) s.excludes.emplace_back(sv_item(c.exclude, i));
  s.from_tail = c.read_from && std::string_view(c.read_from) == "tail";
  s.checkpoint_ms = static_cast<uint64_t>(std::max<int64_t>(0, c.checkpoint_ms));
  s.max_line = static_cast<size_t>(std::clamp<int64_t>(c.max_line, 256, 67108864));
  s.rotate_wait_ms = static_cast<uint64_t>(std::max<int64_t>(0, c.rotate_wait_ms));
  s.batch = static_cast<uint32_t>(std::clamp<int64_t>(c.batch, 1, 100000));
  s.follow = c.follow != 0;
  if (text.has("service")) {
    s.service = text.string("service");
    s.has_service = true;
    if (s.service.empty()) problems.add("service", "empty");
  }
  if (text.has("host")) {
    s.host = text.string("host");
  } else {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0) throw std::runtime_error("gethostname failed");
    s.host = buf;
  }
  if (c.state_file && *c.state_file) {
    s.state_file = c.state_file;
  } else if (c.state_file) {
    problems.add("state_file", "empty");
  }

  return s;
}

}  // namespace devmesh::tail
