#include "ledger/chain.hpp"

#include <openssl/evp.h>

#include <cassert>
#include <memory>

#include "ledger/canonical_json.hpp"

namespace stub::ledger {

namespace {

void append_member(std::string& out, std::string_view key, bool& first) {
  if (!first)
    out += ',';
  first = false;
  append_json_string(out, key);
  out += ':';
}

void append_text_or_null(std::string& out, const std::string& text) {
  if (text.empty()) {
    out += "null";
  } else {
    append_json_string(out, text);
  }
}

}  // namespace

std::string sha256_hex(std::string_view data) {
  // The implementation is fetched once and each thread reuses one context: EVP_Digest with
  // EVP_sha256() looks the implementation up and allocates a context on every call (OpenSSL 3),
  // which cost as much as hashing an entry.
  static EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  struct ContextDeleter {
    void operator()(EVP_MD_CTX* context) const { EVP_MD_CTX_free(context); }
  };
  thread_local const std::unique_ptr<EVP_MD_CTX, ContextDeleter> context(EVP_MD_CTX_new());
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  const int ok = sha256 != nullptr && context != nullptr &&
                 EVP_DigestInit_ex2(context.get(), sha256, nullptr) == 1 &&
                 EVP_DigestUpdate(context.get(), data.data(), data.size()) == 1 &&
                 EVP_DigestFinal_ex(context.get(), digest, &length) == 1;
  assert(ok && length == 32);
  (void)ok;
  static constexpr char hex[] = "0123456789abcdef";
  std::string out(length * 2, '0');
  for (unsigned int i = 0; i < length; ++i) {
    out[2 * i] = hex[digest[i] >> 4];
    out[2 * i + 1] = hex[digest[i] & 0xF];
  }
  return out;
}

std::string postings_to_json_text(const std::vector<Posting>& postings) {
  std::string out = "[";
  bool first_posting = true;
  for (const Posting& posting : postings) {
    if (!first_posting)
      out += ',';
    first_posting = false;
    bool first = true;
    out += '{';
    append_member(out, "account", first);
    append_json_string(out, posting.account);
    append_member(out, "amount", first);
    append_json_string(out, posting.amount.to_string());
    out += '}';
  }
  out += ']';
  return out;
}

std::string entry_canonical_text(const Entry& entry) {
  // Members in JCS order (all keys are ASCII, so byte order is UTF-16 order). A unit test
  // checks this against canonical_json(entry_to_json(entry) minus "hash").
  std::string out;
  out.reserve(512 + entry.receipt_json.size() + entry.tags_json.size());
  bool first = true;
  out += '{';
  append_member(out, "actor", first);
  append_text_or_null(out, entry.actor);
  append_member(out, "amount", first);
  if (entry.amount) {
    append_json_string(out, entry.amount->to_string());
  } else {
    out += "null";
  }
  append_member(out, "budget", first);
  append_json_string(out, entry.budget);
  append_member(out, "code", first);
  append_text_or_null(out, entry.code);
  append_member(out, "detail", first);
  out += entry.detail_json;
  append_member(out, "hold_id", first);
  append_text_or_null(out, entry.hold_id);
  append_member(out, "intent", first);
  append_text_or_null(out, entry.intent);
  append_member(out, "kind", first);
  append_json_string(out, entry.kind);
  append_member(out, "postings", first);
  out += postings_to_json_text(entry.postings);
  append_member(out, "prev_hash", first);
  append_json_string(out, entry.prev_hash);
  append_member(out, "receipt", first);
  out += entry.receipt_json;
  append_member(out, "seq", first);
  out += std::to_string(entry.seq);
  append_member(out, "tags", first);
  out += entry.tags_json;
  append_member(out, "ts", first);
  append_json_string(out, format_timestamp(entry.ts));
  append_member(out, "vendor", first);
  append_text_or_null(out, entry.vendor);
  out += '}';
  return out;
}

std::string entry_to_json_text(const Entry& entry) {
  std::string out = entry_canonical_text(entry);
  assert(!out.empty() && out.back() == '}');
  out.pop_back();
  out += ",\"hash\":";
  append_json_string(out, entry.hash);
  out += '}';
  return out;
}

std::string compute_entry_hash(const Entry& entry) {
  return sha256_hex(entry_canonical_text(entry));
}

void ChainVerifier::fail(int64_t seq, std::string problem) {
  report_.ok = false;
  report_.first_bad_seq = seq;
  report_.problem = std::move(problem);
}

bool ChainVerifier::feed(const Entry& entry) {
  if (!report_.ok)
    return false;
  const int64_t expected_seq = report_.head_seq + 1;
  if (entry.seq != expected_seq) {
    fail(expected_seq, entry.seq > expected_seq ? "entry is missing (seq gap)"
                                                : "entry seq is out of order or repeated");
    return false;
  }
  if (entry.prev_hash != report_.head_hash) {
    fail(entry.seq, "prev_hash does not match the previous entry's hash");
    return false;
  }
  if (compute_entry_hash(entry) != entry.hash) {
    fail(entry.seq, "hash does not match the entry's content");
    return false;
  }
  int64_t sum = 0;
  for (const Posting& posting : entry.postings)
    sum += posting.amount.micros();
  if (sum != 0) {
    fail(entry.seq, "postings do not sum to zero");
    return false;
  }
  report_.head_seq = entry.seq;
  report_.head_hash = entry.hash;
  ++report_.checked;
  return true;
}

VerifyReport ChainVerifier::finish(int64_t recorded_head_seq, std::string_view recorded_head_hash) {
  if (report_.ok) {
    if (recorded_head_seq > report_.head_seq) {
      fail(report_.head_seq + 1, "entry is missing (the recorded head is further on)");
    } else if (recorded_head_seq < report_.head_seq) {
      fail(recorded_head_seq + 1, "entry was inserted after the recorded head");
    } else if (recorded_head_hash != report_.head_hash) {
      fail(report_.head_seq, "last hash does not match the recorded head");
    }
  }
  return report_;
}

}  // namespace stub::ledger
