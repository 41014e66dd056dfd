#include "webhooks/signature.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cassert>

namespace stub::webhooks {

std::string hmac_sha256_hex(std::string_view secret, std::string_view message) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  const unsigned char* result =
      HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest, &length);
  assert(result != nullptr && length == 32);
  (void)result;
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(length * 2);
  for (unsigned int i = 0; i < length; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 15];
  }
  return out;
}

std::string signature(std::string_view secret, int64_t timestamp_seconds, std::string_view body) {
  const std::string timestamp = std::to_string(timestamp_seconds);
  std::string message;
  message.reserve(timestamp.size() + 1 + body.size());
  message += timestamp;
  message += '.';
  message += body;
  return "t=" + timestamp + ",v1=" + hmac_sha256_hex(secret, message);
}

}  // namespace stub::webhooks
