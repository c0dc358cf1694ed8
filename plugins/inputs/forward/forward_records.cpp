// The forward input's event-to-record mapping (see forward_records.hpp).
#include "forward_records.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <devmesh/plugin.hpp>
#include <devmesh/record_fields.hpp>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>

#include <event_id.hpp>
#include <record_columns.hpp>
#include <utf8.hpp>

namespace devmesh::forward {

namespace {

constexpr int64_t kNsPerSec = 1000000000;

std::string_view text_of(const msgpack_object &o) {
  if (o.type == MSGPACK_OBJECT_STR) return {o.via.str.ptr, o.via.str.size};
  if (o.type == MSGPACK_OBJECT_BIN) return {o.via.bin.ptr, o.via.bin.size};
  return {};
}

bool is_text(const msgpack_object &o) {
  return o.type == MSGPACK_OBJECT_STR || o.type == MSGPACK_OBJECT_BIN;
}

// A scalar's text as a column takes it: strings as they are, numbers and bools as written,
// anything else as JSON.
std::string_view column_text(const msgpack_object &o, std::string &scratch) {
  if (is_text(o)) return text_of(o);
  scratch.clear();
  append_json(scratch, o);
  return scratch;
}

void append_number(std::string &out, double v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

template <class T>
void append_int(std::string &out, T v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_hex(std::string &out, const char *p, size_t n) {
  static const char d[] = "0123456789abcdef";
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(p[i]);
    out += d[c >> 4];
    out += d[c & 15];
  }
}

// An ext value as text: EventTime as seconds.nanoseconds, others as ext<type>:<hex>.
std::string ext_text(const msgpack_object &o) {
  std::string s;
  int64_t ns;
  if (o.via.ext.type == 0 && o.via.ext.size == 8 && event_time_ns(o, ns)) {
    append_int(s, ns / kNsPerSec);
    char frac[16];
    std::snprintf(frac, sizeof frac, ".%09lld", static_cast<long long>(ns % kNsPerSec));
    s += frac;
    return s;
  }
  s = "ext" + std::to_string(o.via.ext.type) + ":";
  append_hex(s, o.via.ext.ptr, o.via.ext.size);
  return s;
}

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

void write_json(JsonWriter &w, const msgpack_object &o, std::string &clean) {
  switch (o.type) {
    case MSGPACK_OBJECT_NIL:
      w.Null();
      return;
    case MSGPACK_OBJECT_BOOLEAN:
      w.Bool(o.via.boolean);
      return;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
      w.Uint64(o.via.u64);
      return;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
      w.Int64(o.via.i64);
      return;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
      if (std::isfinite(o.via.f64)) {
        w.Double(o.via.f64);
      } else {
        w.Null();
      }
      return;
    case MSGPACK_OBJECT_STR:
    case MSGPACK_OBJECT_BIN: {
      const std::string_view s = valid_utf8(text_of(o), clean);
      w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
      return;
    }
    case MSGPACK_OBJECT_EXT: {
      const std::string s = ext_text(o);
      w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
      return;
    }
    case MSGPACK_OBJECT_ARRAY:
      w.StartArray();
      for (uint32_t i = 0; i < o.via.array.size; ++i) write_json(w, o.via.array.ptr[i], clean);
      w.EndArray();
      return;
    case MSGPACK_OBJECT_MAP:
      w.StartObject();
      for (uint32_t i = 0; i < o.via.map.size; ++i) {
        const msgpack_object &k = o.via.map.ptr[i].key;
        std::string key_text;
        const std::string_view key =
            is_text(k) ? valid_utf8(text_of(k), clean) : (append_json(key_text, k), key_text);
        w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
        write_json(w, o.via.map.ptr[i].val, clean);
      }
      w.EndObject();
      return;
  }
  w.Null();
}

}  // namespace

const char *reject_label(Reject r) {
  switch (r) {
    case Reject::kBadTime:
      return "bad_time";
    case Reject::kNotAMap:
      return "not_a_map";
    case Reject::kBadEntry:
      return "bad_entry";
    case Reject::kNone:
      break;
  }
  return "none";
}

bool event_time_ns(const msgpack_object &o, int64_t &ns) {
  constexpr int64_t kMaxSec = std::numeric_limits<int64_t>::max() / kNsPerSec;
  switch (o.type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
      if (o.via.u64 > static_cast<uint64_t>(kMaxSec)) return false;
      ns = static_cast<int64_t>(o.via.u64) * kNsPerSec;
      return true;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
      if (o.via.i64 < -kMaxSec) return false;
      ns = o.via.i64 * kNsPerSec;
      return true;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: {
      const double s = o.via.f64;
      // One second inside the integer bounds: the fraction's rounding cannot overflow.
      if (!std::isfinite(s) || s > static_cast<double>(kMaxSec - 1) ||
          s < -static_cast<double>(kMaxSec - 1))
        return false;
      const double whole = std::floor(s);
      ns = static_cast<int64_t>(whole) * kNsPerSec +
           static_cast<int64_t>(std::llround((s - whole) * 1e9));
      return true;
    }
    case MSGPACK_OBJECT_EXT: {
      if (o.via.ext.type != 0 || o.via.ext.size != 8) return false;
      const auto *p = reinterpret_cast<const unsigned char *>(o.via.ext.ptr);
      const uint32_t sec =
          (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
      const uint32_t nsec =
          (uint32_t(p[4]) << 24) | (uint32_t(p[5]) << 16) | (uint32_t(p[6]) << 8) | p[7];
      if (nsec >= kNsPerSec) return false;
      ns = static_cast<int64_t>(sec) * kNsPerSec + nsec;
      return true;
    }
    default:
      return false;
  }
}

void append_json(std::string &out, const msgpack_object &o) {
  rapidjson::StringBuffer sb;
  JsonWriter w(sb);
  std::string clean;
  write_json(w, o, clean);
  out.append(sb.GetString(), sb.GetSize());
}

Reject RecordBuilder::add_entry(dm_batch *batch, const msgpack_object &entry,
                                const Origin &origin) {
  if (entry.type != MSGPACK_OBJECT_ARRAY || entry.via.array.size != 2) return Reject::kBadEntry;
  const msgpack_object &head = entry.via.array.ptr[0];
  if (head.type == MSGPACK_OBJECT_ARRAY) {
    // Fluent Bit's event format 2: [[time, metadata], record]
    if (head.via.array.size < 1) return Reject::kBadTime;
    const Reject r = add(batch, head.via.array.ptr[0], entry.via.array.ptr[1], origin);
    if (r != Reject::kNone || head.via.array.size < 2) return r;
    const msgpack_object &meta = head.via.array.ptr[1];
    if (meta.type == MSGPACK_OBJECT_MAP && meta.via.map.size > 0) {
      dm_record *rec = &batch->records[batch->count - 1];
      for (uint32_t i = 0; i < meta.via.map.size && rec->meta_count < limits_.max_meta_keys; ++i) {
        const msgpack_object &k = meta.via.map.ptr[i].key;
        key_text_.clear();
        const std::string_view key =
            is_text(k) ? text_of(k) : (append_json(key_text_, k), key_text_);
        set_meta(batch, rec, key, meta.via.map.ptr[i].val);
      }
      derive_event_id(host_->hash128, *rec, id_scratch_);
    }
    return Reject::kNone;
  }
  return add(batch, head, entry.via.array.ptr[1], origin);
}

Reject RecordBuilder::add(dm_batch *batch, const msgpack_object &time, const msgpack_object &record,
                          const Origin &origin) {
  int64_t ns;
  if (!event_time_ns(time, ns)) return Reject::kBadTime;
  if (record.type != MSGPACK_OBJECT_MAP) return Reject::kNotAMap;
  dm_record *rec = host_->batch_add(batch);
  if (rec == nullptr) throw std::runtime_error("batch_add failed");
  rec->timestamp_ns = ns;
  rec->level = DM_LEVEL_INFO;

  const msgpack_object *level_value = nullptr;
  std::string_view level_key;
  bool truncated = false;
  std::string truncated_fields;
  auto set_column = [&](dm_str dm_record::*member, size_t max_chars, std::string_view field,
                        std::string_view value) {
    if (max_chars && value.size() > max_chars) {
      const size_t keep = utf8_prefix_bytes(value, max_chars);
      if (keep < value.size()) {
        value = value.substr(0, keep);
        truncated = true;
        if (!truncated_fields.empty()) truncated_fields += ',';
        truncated_fields += field;
      }
    }
    rec->*member = host_->arena_copy(batch, value.data(), value.size());
  };
  auto column_limit = [](dm_str dm_record::*member) -> size_t {
    for (const RecordField &f : kRecordFields)
      if (f.member == member) return f.max_chars;
    return 0;
  };

  const msgpack_object_kv *kv = record.via.map.ptr;
  for (uint32_t i = 0; i < record.via.map.size; ++i) {
    const msgpack_object &k = kv[i].key, &v = kv[i].val;
    key_text_.clear();
    const std::string_view key = is_text(k) ? text_of(k) : (append_json(key_text_, k), key_text_);
    dm_str dm_record::*member = nullptr;
    const char *field = nullptr;
    Column c = Column::none;
    if (!limits_.service_key.empty()) {
      if (key == limits_.service_key) c = Column::service;
    }
    if (c == Column::none) {
      c = column_of(key);
      if (c == Column::service && !limits_.service_key.empty()) c = Column::none;
    }
    // Nested values and nulls stay in meta: a column holds text.
    const bool scalar = v.type != MSGPACK_OBJECT_MAP && v.type != MSGPACK_OBJECT_ARRAY &&
                        v.type != MSGPACK_OBJECT_NIL;
    if (scalar) {
      switch (c) {
        case Column::message:
          member = &dm_record::message, field = "message";
          break;
        case Column::service:
          member = &dm_record::service, field = "service";
          break;
        case Column::host:
          member = &dm_record::host, field = "host";
          break;
        case Column::trace_id:
          member = &dm_record::trace_id, field = "trace_id";
          break;
        case Column::span_id:
          member = &dm_record::span_id, field = "span_id";
          break;
        case Column::event_type:
          member = &dm_record::event_type, field = "event_type";
          break;
        case Column::error_code:
          member = &dm_record::error_code, field = "error_code";
          break;
        case Column::level:
          if (level_value == nullptr) {
            level_value = &v;
            level_key = key;
            continue;
          }
          break;
        default:
          break;
      }
    }
    // The first field naming a column fills it; a second one stays in meta.
    if (member != nullptr && (rec->*member).len == 0) {
      const std::string_view value = column_text(v, text_);
      if (!value.empty()) {
        set_column(member, column_limit(member), field, value);
        continue;
      }
    }
    if (rec->meta_count >= limits_.max_meta_keys) {
      if (!truncated || truncated_fields.find("meta") == std::string::npos) {
        truncated = true;
        if (!truncated_fields.empty()) truncated_fields += ',';
        truncated_fields += "meta";
      }
      continue;
    }
    set_meta(batch, rec, key, v);
  }

  if (level_value != nullptr) {
    uint8_t level = DM_LEVEL_UNSET;
    if (is_text(*level_value)) {
      level = level_from_text(text_of(*level_value));
    } else if (level_value->type == MSGPACK_OBJECT_POSITIVE_INTEGER && level_value->via.u64 <= 7) {
      level = level_from_priority(static_cast<int>(level_value->via.u64));
    }
    if (level != DM_LEVEL_UNSET) {
      rec->level = level;
    } else if (rec->meta_count < limits_.max_meta_keys) {
      set_meta(batch, rec, level_key, *level_value);  // unknown: INFO, the text kept in meta
    }
  }

  static constexpr std::string_view kSource = "forward", kUnknown = "unknown";
  rec->source = str(kSource);
  if (rec->service.len == 0) {
    const std::string_view tag = origin.tag.empty() ? kUnknown : origin.tag;
    set_column(&dm_record::service, column_limit(&dm_record::service), "service", tag);
  } else if (!origin.tag.empty() && sv(rec->service) != origin.tag) {
    // The tag is kept when the record named its own service.
    static constexpr std::string_view kTag = "tag";
    if (host_->meta_set(batch, rec, str(kTag), str(origin.tag), DM_META_STRING) != DM_OK)
      throw std::runtime_error("meta_set failed");
  }
  if (rec->host.len == 0) {
    const std::string_view h = origin.host.empty() ? kUnknown : origin.host;
    set_column(&dm_record::host, column_limit(&dm_record::host), "host", h);
  }
  if (truncated) {
    ++truncated_;
    static constexpr std::string_view kKey = "truncated";
    if (host_->meta_set(batch, rec, str(kKey), str(truncated_fields), DM_META_STRING) != DM_OK)
      throw std::runtime_error("meta_set failed");
  }
  derive_event_id(host_->hash128, *rec, id_scratch_);
  return Reject::kNone;
}

// The records of one client repeat the same few keys: their columns are remembered (a few
// dozen, compared byte for byte) instead of matched against every alias each time.
Column RecordBuilder::column_of(std::string_view key) {
  for (const KnownKey &k : known_)
    if (k.name.size() == key.size() && std::memcmp(k.name.data(), key.data(), key.size()) == 0)
      return k.column;
  const Column c = column_for_key(key);
  if (key.size() <= 64) {
    if (known_.size() >= kKnownKeys) known_.erase(known_.begin());
    known_.push_back(KnownKey{std::string(key), c});
  }
  return c;
}

void RecordBuilder::set_meta(dm_batch *b, dm_record *r, std::string_view key,
                             const msgpack_object &v) {
  uint32_t type = DM_META_STRING;
  std::string_view value;
  text_.clear();
  switch (v.type) {
    case MSGPACK_OBJECT_STR:
    case MSGPACK_OBJECT_BIN:
      value = text_of(v);
      break;
    case MSGPACK_OBJECT_NIL:
      type = DM_META_NULL, value = "null";
      break;
    case MSGPACK_OBJECT_BOOLEAN:
      type = DM_META_BOOL, value = v.via.boolean ? "true" : "false";
      break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
      append_int(text_, v.via.u64);
      type = DM_META_INT, value = text_;
      break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
      append_int(text_, v.via.i64);
      type = DM_META_INT, value = text_;
      break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
      if (std::isfinite(v.via.f64)) {
        append_number(text_, v.via.f64);
        // to_chars writes 1e+300 or 5 for whole numbers: both JSON numbers, and FLOAT keeps the
        // type even when the text has no point.
        type = DM_META_FLOAT;
      } else {
        text_ = std::isnan(v.via.f64) ? "NaN" : (v.via.f64 > 0 ? "Infinity" : "-Infinity");
      }
      value = text_;
      break;
    case MSGPACK_OBJECT_EXT:
      text_ = ext_text(v);
      value = text_;
      break;
    case MSGPACK_OBJECT_ARRAY:
    case MSGPACK_OBJECT_MAP:
      append_json(text_, v);
      type = DM_META_JSON, value = text_;
      break;
  }
  if (host_->meta_set(b, r, str(key), str(value), type) != DM_OK)
    throw std::runtime_error("meta_set refused a value of key " + std::string(key));
}

}  // namespace devmesh::forward
