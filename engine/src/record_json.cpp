// JSON rendering of records with RapidJSON (escaping and invalid UTF-8 handled by the library).
#include "record_json.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <devmesh/record_fields.hpp>

#include <ctime>

namespace devmesh {

std::string format_timestamp(int64_t ns) {
  time_t secs = static_cast<time_t>(ns / 1000000000);
  long frac = static_cast<long>(ns % 1000000000);
  if (frac < 0) {
    frac += 1000000000;
    secs -= 1;
  }
  tm t;
  gmtime_r(&secs, &t);
  char buf[64];
  snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", t.tm_year + 1900, t.tm_mon + 1,
           t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, frac / 1000);
  return buf;
}

using Writer = rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>,
                                 rapidjson::CrtAllocator, rapidjson::kWriteValidateEncodingFlag>;

// Appends `s` as a JSON string; invalid UTF-8 sequences become U+FFFD so a record with a
// binary message is still written (never lost, never invalid JSON).
static void put(Writer &w, dm_str s) {
  struct Sink {
    std::string *out;
    void Put(char c) { out->push_back(c); }
  };
  std::string clean;
  clean.reserve(s.len);
  Sink sink{&clean};
  // NUL-padded: Validate takes every tail byte a lead byte announces, even past a NUL, so a
  // 4-byte lead at the end reads 3 bytes past it (found by tests/fuzz).
  std::string src(s.len ? s.ptr : "", s.len);
  src.append(3, '\0');
  rapidjson::StringStream in(src.c_str());
  const char *end = src.c_str() + s.len;
  while (in.src_ < end) {
    const char *at = in.src_;
    if (!rapidjson::UTF8<>::Validate(in, sink) || in.src_ > end) {
      clean.resize(clean.size() - std::min<size_t>(clean.size(), in.src_ - at));
      clean += "\xEF\xBF\xBD";
      in.src_ = at + 1;
    }
  }
  w.String(clean.c_str(), static_cast<rapidjson::SizeType>(clean.size()));
}

// A typed value is JSON text meta_set validated: written as it is, so 123 stays 123.
static void put_meta_value(Writer &w, const dm_kv &kv) {
  if (kv.type == DM_META_STRING) {
    put(w, kv.value);
    return;
  }
  const rapidjson::Type kind = kv.type == DM_META_JSON   ? rapidjson::kObjectType
                               : kv.type == DM_META_BOOL ? rapidjson::kTrueType
                               : kv.type == DM_META_NULL ? rapidjson::kNullType
                                                         : rapidjson::kNumberType;
  w.RawValue(kv.value.ptr, kv.value.len, kind);
}

static void write_record(Writer &w, const dm_record &r) {
  w.StartObject();
  std::string ts = format_timestamp(r.timestamp_ns);
  w.Key("timestamp");
  w.String(ts.c_str());
  for (size_t i = 0; i < kRecordFieldCount; i++) {
    if (i == kLevelBefore) {
      w.Key("level");
      w.String(dm_level_name(r.level));
    }
    const RecordField &f = kRecordFields[i];
    const dm_str v = r.*f.member;
    if (f.optional && v.len == 0) continue;  // empty optional fields are left out
    w.Key(f.name.data(), static_cast<rapidjson::SizeType>(f.name.size()));
    put(w, v);
  }
  if (r.meta_count) {
    w.Key("meta_json");
    w.StartObject();
    for (uint32_t i = 0; i < r.meta_count; i++) {
      put(w, r.meta[i].key);
      put_meta_value(w, r.meta[i]);
    }
    w.EndObject();
  }
  static const char hex[] = "0123456789abcdef";
  char id[33];
  for (int i = 0; i < 16; i++) {
    id[2 * i] = hex[r.event_id[i] >> 4];
    id[2 * i + 1] = hex[r.event_id[i] & 15];
  }
  id[32] = 0;
  w.Key("event_id");
  w.String(id, 32);
  w.EndObject();
}

void append_record_json(std::string &out, const dm_record &r) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  write_record(w, r);
  out.append(sb.GetString(), sb.GetSize());
}

void append_dead_letter_json(std::string &out, const dm_record &r, const std::string &output,
                             const std::string &reason) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("output");
  put(w, dm_str{output.data(), output.size()});
  w.Key("reason");
  put(w, dm_str{reason.data(), reason.size()});
  w.Key("time");
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  std::string now = format_timestamp(static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec);
  w.String(now.c_str());
  w.Key("record");
  write_record(w, r);
  w.EndObject();
  out.append(sb.GetString(), sb.GetSize());
  out.push_back('\n');
}

}  // namespace devmesh
