// Test-only filter that misbehaves on a record whose message contains a trigger: crashes
// (a real SIGSEGV, a stack overflow, or abort()), blocks the loop for a while, returns a verdict
// value the ABI does not define, or drops. Records without a trigger pass untouched.
#include <devmesh/plugin.hpp>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

namespace {

const dm_option kOptions[] = {
    {"crash_on", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "A record whose message contains this makes the filter write through a null pointer", 0},
    {"abort_on", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "A record whose message contains this makes the filter call abort()", 0},
    {"overflow_on", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "A record whose message contains this makes the filter recurse until the stack overflows", 0},
    {"sleep_on", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "A record whose message contains this makes the filter sleep for `sleep`", 0},
    {"sleep", DM_OPT_DURATION, 0, "10s", 0, 0, nullptr, "How long sleep_on blocks", 0},
    {"verdict_on", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "A record whose message contains this gets the verdict `verdict`", 0},
    {"drop_on", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "A record whose message contains this is dropped (DM_DROP)", 0},
    {"verdict", DM_OPT_INT, DM_OPT_BOUNDED, "7", 0, 255, nullptr, "The verdict for verdict_on", 0},
};

bool contains(const dm_record &r, const std::string &needle) {
  return !needle.empty() && devmesh::sv(r.message).find(needle) != std::string_view::npos;
}

// Never inlined or turned into a loop: each level keeps a live buffer on the stack. The
// condition is never false at run time, but the compiler cannot know it.
__attribute__((noinline)) int recurse(volatile char *prev, int depth) {
  volatile char frame[4096];
  frame[0] = static_cast<char>(depth);
  frame[4095] = prev ? prev[0] : 0;
  if (depth < 0) return frame[4095];
  return recurse(frame, depth + 1) + frame[4095];
}

class Misbehave {
 public:
  Misbehave(const dm_host_api *h, dm_instance *, const dm_config *c) {
    devmesh::Config cfg{h, c};
    if (cfg.has("crash_on")) crash_on_ = cfg.string("crash_on");
    if (cfg.has("overflow_on")) overflow_on_ = cfg.string("overflow_on");
    if (cfg.has("abort_on")) abort_on_ = cfg.string("abort_on");
    if (cfg.has("sleep_on")) sleep_on_ = cfg.string("sleep_on");
    if (cfg.has("verdict_on")) verdict_on_ = cfg.string("verdict_on");
    if (cfg.has("drop_on")) drop_on_ = cfg.string("drop_on");
    sleep_ms_ = cfg.integer("sleep");
    verdict_ = static_cast<uint8_t>(cfg.integer("verdict"));
  }

  int filter(dm_batch *b, uint8_t *verdicts) {
    for (uint32_t i = 0; i < b->count; i++) {
      const dm_record &r = b->records[i];
      if (contains(r, crash_on_)) *static_cast<volatile int *>(null_) = 1;
      if (contains(r, overflow_on_)) recurse(nullptr, 0);
      if (contains(r, abort_on_)) std::abort();
      if (contains(r, sleep_on_)) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms_));
      if (contains(r, verdict_on_)) verdicts[i] = verdict_;
      if (contains(r, drop_on_)) verdicts[i] = DM_DROP;
    }
    return 0;
  }

 private:
  std::string crash_on_, overflow_on_, abort_on_, sleep_on_, verdict_on_, drop_on_;
  int64_t sleep_ms_ = 0;
  uint8_t verdict_ = 7;
  void *volatile null_ = nullptr;  // volatile: the compiler cannot prove the write is undefined
};

}  // namespace

DEVMESH_PLUGIN(devmesh::PluginAdapter<Misbehave>::describe(DM_FILTER, "misbehave", "1.0",
                                                           "Test filter that crashes, blocks or "
                                                           "returns a bad verdict on demand",
                                                           kOptions,
                                                           sizeof kOptions / sizeof kOptions[0], 0))
