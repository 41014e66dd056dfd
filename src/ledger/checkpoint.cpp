#include "ledger/checkpoint.hpp"

#include <algorithm>
#include <boost/json/parse.hpp>
#include <cassert>
#include <charconv>
#include <chrono>

#include "ledger/canonical_json.hpp"
#include "ledger/time_point.hpp"

namespace stub::ledger {

namespace {

constexpr size_t hash_length = 64;
constexpr size_t signature_text_length_max = 128;  // base64 of 64 bytes is 88
constexpr size_t checkpoint_text_length_max = 4'096;

bool is_lower_hex(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Members in JCS order (hash, key_id, root, seq, signature, ts); `signed_only` leaves out the
// two that are not signed.
std::string checkpoint_text(const Checkpoint& checkpoint, bool signed_only) {
  std::string out = "{\"hash\":";
  append_json_string(out, checkpoint.hash);
  if (!signed_only) {
    out += ",\"key_id\":";
    append_json_string(out, checkpoint.key_id);
  }
  out += ",\"root\":";
  append_json_string(out, checkpoint.root);
  out += ",\"seq\":" + std::to_string(checkpoint.seq);
  if (!signed_only) {
    out += ",\"signature\":";
    append_json_string(out, checkpoint.signature);
  }
  out += ",\"ts\":";
  append_json_string(out, format_timestamp(checkpoint.ts));
  out += '}';
  return out;
}

std::optional<int64_t> digits(std::string_view text) {
  int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size() || value < 0)
    return std::nullopt;
  return value;
}

}  // namespace

std::string checkpoint_message(const Checkpoint& checkpoint) {
  return checkpoint_text(checkpoint, true);
}

std::string checkpoint_to_json(const Checkpoint& checkpoint) {
  return checkpoint_text(checkpoint, false);
}

std::optional<Micros> parse_timestamp(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS.ffffffZ, exactly as format_timestamp writes it.
  if (text.size() != 27 || text[4] != '-' || text[7] != '-' || text[10] != 'T' || text[13] != ':' ||
      text[16] != ':' || text[19] != '.' || text[26] != 'Z') {
    return std::nullopt;
  }
  const auto year = digits(text.substr(0, 4));
  const auto month = digits(text.substr(5, 2));
  const auto day = digits(text.substr(8, 2));
  const auto hour = digits(text.substr(11, 2));
  const auto minute = digits(text.substr(14, 2));
  const auto second = digits(text.substr(17, 2));
  const auto fraction = digits(text.substr(20, 6));
  if (!year || !month || !day || !hour || !minute || !second || !fraction || *hour > 23 ||
      *minute > 59 || *second > 59) {
    return std::nullopt;
  }
  const std::chrono::year_month_day date{std::chrono::year(static_cast<int>(*year)),
                                         std::chrono::month(static_cast<unsigned>(*month)),
                                         std::chrono::day(static_cast<unsigned>(*day))};
  if (!date.ok())
    return std::nullopt;
  const int64_t days = std::chrono::sys_days(date).time_since_epoch().count();
  const Micros at = ((days * 24 + *hour) * 60 + *minute) * 60 * micros_per_second +
                    *second * micros_per_second + *fraction;
  assert(format_timestamp(at) == text);
  return at;
}

Result<Checkpoint> checkpoint_from_json(std::string_view text) {
  const auto invalid = [](std::string what) {
    return Error::invalid("invalid_checkpoint", "Checkpoint " + what + ".");
  };
  if (text.size() > checkpoint_text_length_max)
    return invalid("is longer than " + std::to_string(checkpoint_text_length_max) + " bytes");
  boost::system::error_code error;
  const boost::json::value parsed = boost::json::parse(text, error);
  if (error || !parsed.is_object())
    return invalid("is not a JSON object");
  const boost::json::object& object = parsed.get_object();
  const auto text_member = [&object](std::string_view name) -> std::optional<std::string> {
    const auto* found = object.if_contains(name);
    if (found == nullptr || !found->is_string())
      return std::nullopt;
    return std::string(found->get_string());
  };
  Checkpoint checkpoint;
  const auto root = text_member("root");
  const auto hash = text_member("hash");
  const auto ts = text_member("ts");
  const auto key_id = text_member("key_id");
  const auto signature = text_member("signature");
  const auto* seq = object.if_contains("seq");
  if (!root || root->empty() || root->size() > 64)
    return invalid("has no valid root");
  if (!hash || hash->size() != hash_length || !is_lower_hex(*hash))
    return invalid("has no valid hash (64 lowercase hex digits)");
  if (seq == nullptr || !seq->is_int64() || seq->get_int64() < 1)
    return invalid("has no valid seq (an integer from 1)");
  const auto at = ts ? parse_timestamp(*ts) : std::nullopt;
  if (!at)
    return invalid("has no valid ts (RFC 3339 with microseconds, UTC)");
  if (!signature || signature->empty() || signature->size() > signature_text_length_max)
    return invalid("has no signature");
  checkpoint.root = *root;
  checkpoint.hash = *hash;
  checkpoint.seq = seq->get_int64();
  checkpoint.ts = *at;
  checkpoint.key_id = key_id.value_or("");
  checkpoint.signature = *signature;
  assert(checkpoint.seq >= 1 && checkpoint.hash.size() == hash_length);
  return checkpoint;
}

CheckpointMatcher::CheckpointMatcher(std::vector<Checkpoint> checkpoints)
    : checkpoints_(std::move(checkpoints)) {
  std::stable_sort(checkpoints_.begin(), checkpoints_.end(),
                   [](const Checkpoint& a, const Checkpoint& b) { return a.seq < b.seq; });
  seen_.resize(checkpoints_.size());
}

void CheckpointMatcher::feed(const Entry& entry) {
  // Checkpoints are few next to entries: find the ones at this seq by binary search.
  const auto first = std::lower_bound(
      checkpoints_.begin(), checkpoints_.end(), entry.seq,
      [](const Checkpoint& checkpoint, int64_t seq) { return checkpoint.seq < seq; });
  const auto last = std::upper_bound(
      first, checkpoints_.end(), entry.seq,
      [](int64_t seq, const Checkpoint& checkpoint) { return seq < checkpoint.seq; });
  for (auto it = first; it != last; ++it)
    seen_[static_cast<size_t>(it - checkpoints_.begin())] = entry.hash;
}

CheckpointMatcher::Report CheckpointMatcher::finish(int64_t verified_seq,
                                                    int64_t recorded_head_seq) const {
  assert(seen_.size() == checkpoints_.size());
  Report report;
  for (size_t index = 0; index < checkpoints_.size(); ++index) {
    const Checkpoint& checkpoint = checkpoints_[index];
    const std::string at = " at seq " + std::to_string(checkpoint.seq) + " (signed " +
                           format_timestamp(checkpoint.ts) + ")";
    std::string problem;
    if (checkpoint.seq > recorded_head_seq) {
      problem = "the database's head is seq " + std::to_string(recorded_head_seq) +
                ", before the checkpoint" + at + ": entries were cut from the end";
    } else if (checkpoint.seq > verified_seq) {
      problem = "the chain breaks at seq " + std::to_string(verified_seq + 1) +
                ", before the checkpoint" + at;
    } else if (seen_[index] != checkpoint.hash) {
      problem = "the database has hash " + seen_[index] + " at seq " +
                std::to_string(checkpoint.seq) + " where the checkpoint" + at + " signed " +
                checkpoint.hash + ": an entry up to that seq was rewritten";
    }
    if (!problem.empty()) {
      report.first_contradicted = checkpoint;
      report.problem = std::move(problem);
      return report;
    }
    ++report.checked;
    report.latest_seq = checkpoint.seq;
  }
  assert(report.checked == static_cast<int64_t>(checkpoints_.size()));
  return report;
}

}  // namespace stub::ledger
