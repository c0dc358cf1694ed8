// One syslog message parsed into views of its text: RFC 5424, and RFC 3164 (BSD) with the
// variants real senders use (no hostname, an RFC 3339 timestamp as rsyslog forwards, no
// timestamp at all). Pure functions, no host calls, so the framing and the record mapping stay
// in the plugin and this can be reasoned about (and tested) on its own.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace devmesh::syslog {

// Why a message was not read as what it claimed to be: its whole text is then the message.
enum class Failure : uint8_t {
  none,
  pri,        // no <PRI> (missing, not 1-3 digits, above 191): RFC 3164 4.3.3's user.notice
  header,     // RFC 5424: a header field missing or malformed (timestamp, a field too long)
  structured  // RFC 5424: structured data malformed
};

// One SD-PARAM: its value still escaped as sent (\" \\ \]); unescape() gives the text.
struct SdParam {
  std::string_view id, name, raw_value;
};

struct Message {
  int pri = -1;  // 0..191 (facility * 8 + severity); -1 when absent
  bool rfc5424 = false;
  Failure failure = Failure::none;
  bool has_timestamp = false;
  int64_t timestamp_ns = 0;
  std::string_view hostname, app_name, procid, msgid, message;  // empty: absent or nil ("-")
  std::vector<SdParam> sd;
};

// Parses `text` (one frame, trailing CR/LF/NUL already removed) into `out` (views into text).
// now_ns (UTC) is for RFC 3164's year-less timestamps. Never fails: a message it cannot read
// has failure set and message = text.
void parse(std::string_view text, int64_t now_ns, Message &out);

// An SD-PARAM value with RFC 5424's escapes (\" \\ \]) undone; other backslashes are kept.
std::string_view unescape(std::string_view raw, std::string &scratch);

// The RFC 5424 keyword of a facility (0..23): "kern", "user", ... "local7".
std::string_view facility_name(int facility);

// RFC 3164's "Mmm dd hh:mm:ss" without a year, in the year that puts it nearest to now: the
// current one, or the previous one when that would be more than 7 days ahead (a December
// message read in January), or the next one when more than 358 days behind (a sender whose
// clock is past New Year before ours): timestamp.hpp's place_in_year with kSyslogYearWindow.
// Exposed for the year-rollover rule's reasoning.
int64_t bsd_time_ns(int month, int day, int hh, int mm, int ss, int64_t frac_ns, int64_t now_ns);

}  // namespace devmesh::syslog
