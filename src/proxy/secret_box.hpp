#pragma once

// Vendor credentials at rest: AES-256-GCM through OpenSSL EVP. The key comes from
// STUB_SECRET_KEY (64 hex digits or the base64 of 32 bytes) or a key file generated on first
// start with mode 0600 (like the checkpoint signing key). A sealed value is
// "v1:" + base64(12-byte nonce || ciphertext || 16-byte tag), with the vendor's name as the
// additional data, so a sealed credential copied onto another vendor does not open.

#include <array>
#include <string>
#include <string_view>

#include "ledger/result.hpp"

namespace stub::proxy {

class SecretBox {
 public:
  static constexpr size_t key_length = 32;

  // 64 hex digits, or standard/URL-safe base64 of exactly 32 bytes.
  static Result<SecretBox> from_text(std::string_view text);
  // Reads the key file at `path` (its text as from_text takes it); when there is none, makes a
  // random key and writes it there (hex) with mode 0600, created exclusively. A key file that
  // others may read is refused.
  static Result<SecretBox> load_or_create(const std::string& path);
  static Result<SecretBox> generate();

  Result<std::string> seal(std::string_view plaintext, std::string_view context) const;
  Result<std::string> open(std::string_view sealed, std::string_view context) const;

  std::string key_hex() const;

 private:
  std::array<unsigned char, key_length> key_{};
};

}  // namespace stub::proxy
