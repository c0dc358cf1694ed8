// The fatal-signal handler. Async-signal-safe only: the line is assembled by hand in a stack
// buffer (no malloc, no stdio, no locale) and written with one write(2). It runs on the
// thread's alternate stack (WatchedThread) so a stack overflow is reported too.
#include "crash_report.h"

#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <ctime>

#include "plugin_call.h"

namespace devmesh {

namespace {

constexpr int kSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};

struct Line {
  char buf[1024];
  size_t len = 0;
  void add(const char *s, size_t max = 200) {
    for (size_t i = 0; s && s[i] && i < max && len < sizeof buf - 1; i++) {
      const char c = s[i];
      buf[len++] = (c == '\n' || c == '\r') ? ' ' : c;
    }
  }
  void num(uint64_t v, int width = 0, int base = 10) {
    char tmp[24];
    int n = 0;
    do {
      const int d = static_cast<int>(v % base);
      tmp[n++] = static_cast<char>(d < 10 ? '0' + d : 'a' + d - 10);
      v /= base;
    } while (v && n < 24);
    while (n < width && n < 24) tmp[n++] = '0';
    while (n > 0 && len < sizeof buf - 1) buf[len++] = tmp[--n];
  }
};

const char *signal_name(int sig) {
  switch (sig) {
    case SIGSEGV:
      return "SIGSEGV";
    case SIGBUS:
      return "SIGBUS";
    case SIGFPE:
      return "SIGFPE";
    case SIGILL:
      return "SIGILL";
    case SIGABRT:
      return "SIGABRT";
  }
  return "a fatal signal";
}

// The log line's timestamp without gmtime_r (not async-signal-safe): days to civil date.
void add_time(Line &l) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  const int64_t secs = ts.tv_sec;
  int64_t days = secs / 86400, rem = secs % 86400;
  days += 719468;
  const int64_t era = days / 146097;
  const int64_t doe = days - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const int64_t m = mp < 10 ? mp + 3 : mp - 9;
  const int64_t y = yoe + era * 400 + (m <= 2);
  l.num(static_cast<uint64_t>(y), 4);
  l.add("-");
  l.num(static_cast<uint64_t>(m), 2);
  l.add("-");
  l.num(static_cast<uint64_t>(d), 2);
  l.add("T");
  l.num(static_cast<uint64_t>(rem / 3600), 2);
  l.add(":");
  l.num(static_cast<uint64_t>(rem % 3600 / 60), 2);
  l.add(":");
  l.num(static_cast<uint64_t>(rem % 60), 2);
  l.add(".");
  l.num(static_cast<uint64_t>(ts.tv_nsec / 1000000), 3);
  l.add("Z ");
}

void on_fatal_signal(int sig, siginfo_t *info, void *) {
  const int saved_errno = errno;
  CallSlot &slot = this_thread_slot();
  const char *instance = slot.instance.load(std::memory_order_relaxed);
  const char *callback = slot.callback.load(std::memory_order_relaxed);
  const char *tag = slot.tag.load(std::memory_order_relaxed);
  Line l;
  add_time(l);
  l.add("error [");
  l.add(instance ? instance : "engine");
  l.add("] fatal signal ");
  l.add(signal_name(sig));
  if (sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL) {
    l.add(" (address 0x");
    l.num(reinterpret_cast<uintptr_t>(info ? info->si_addr : nullptr), 0, 16);
    l.add(")");
  }
  if (instance) {
    l.add(" in plugin instance '");
    l.add(instance);
    l.add("', callback ");
    l.add(callback ? callback : "?");
    if (tag && *tag) {
      l.add(", batch tag '");
      l.add(tag);
      l.add("'");
    }
  } else {
    l.add(" outside any plugin call");
  }
  l.add(", on the ");
  l.add(slot.role);
  l.add(
      " thread: devmesh dies; unacknowledged records are re-sent by their inputs after a "
      "restart");
  l.buf[l.len++] = '\n';  // add() reserved the byte
  const char *p = l.buf;
  size_t left = l.len;
  while (left > 0) {
    const ssize_t w = write(STDERR_FILENO, p, left);
    if (w <= 0) break;
    p += w;
    left -= static_cast<size_t>(w);
  }
  // SA_RESETHAND restored the default action. A fault re-executes and dies of it on return;
  // a sent or raised signal (abort, kill) needs raising again. Either way: the same signal.
  raise(sig);
  errno = saved_errno;
}

}  // namespace

void install_crash_report() {
  struct sigaction sa {};
  sa.sa_sigaction = on_fatal_signal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  for (int sig : kSignals) sigaction(sig, &sa, nullptr);
}

}  // namespace devmesh
