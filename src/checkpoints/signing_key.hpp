#pragma once

// The server's Ed25519 checkpoint key (OpenSSL 3, EVP_PKEY_ED25519), and the public half that
// `stub verify` checks checkpoints with. Key text is PEM (PKCS#8 private, SubjectPublicKeyInfo
// public) or the base64 of the raw 32-byte seed / public key.

#include <memory>
#include <string>
#include <string_view>

#include "ledger/result.hpp"

struct evp_pkey_st;  // OpenSSL's EVP_PKEY, kept out of this header

namespace stub::checkpoints {

struct KeyDeleter {
  void operator()(::evp_pkey_st* key) const;
};
using KeyHandle = std::unique_ptr<::evp_pkey_st, KeyDeleter>;

class VerifyingKey {
 public:
  // PEM, or the base64 of the raw 32 bytes.
  static Result<VerifyingKey> from_text(std::string_view text);
  // True when `signature_base64` is this key's Ed25519 signature of `message`.
  bool verify(std::string_view message, std::string_view signature_base64) const;
  const std::string& public_key_base64() const { return public_base64_; }
  std::string public_key_pem() const;
  // 16 hex digits of SHA-256 over the raw public key: names the key in each checkpoint.
  const std::string& key_id() const { return key_id_; }

 private:
  friend class SigningKey;
  static Result<VerifyingKey> from_handle(KeyHandle key);
  KeyHandle key_;
  std::string public_base64_;
  std::string key_id_;
};

class SigningKey {
 public:
  // PEM (PKCS#8), or the base64 of the raw 32-byte seed: the form of STUB_SIGNING_KEY.
  static Result<SigningKey> from_text(std::string_view text);
  // Reads the PEM key file at `path`; when there is none, generates a key and writes it there
  // with mode 0600 (created exclusively, so two processes never both write one). A key file
  // that others may read is refused.
  static Result<SigningKey> load_or_create(const std::string& path);
  static Result<SigningKey> generate();

  // base64 of the Ed25519 signature of `message`.
  Result<std::string> sign(std::string_view message) const;
  const VerifyingKey& public_key() const { return public_; }
  std::string private_key_pem() const;

 private:
  static Result<SigningKey> from_handle(KeyHandle key);
  KeyHandle key_;
  VerifyingKey public_;
};

// Standard base64 with padding (RFC 4648 section 4).
std::string base64_encode(std::string_view bytes);
// Standard or URL-safe alphabet, padding optional; nullopt on anything else.
Result<std::string> base64_decode(std::string_view text);

}  // namespace stub::checkpoints
