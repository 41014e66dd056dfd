#include "checkpoints/signing_key.hpp"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "ledger/chain.hpp"

namespace stub::checkpoints {

namespace {

constexpr size_t raw_key_length = 32;
constexpr size_t signature_length = 64;
constexpr size_t key_text_length_max = 4'096;
constexpr size_t key_id_length = 16;

Error key_error(std::string message) {
  return Error::invalid("invalid_signing_key", std::move(message));
}

std::string trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos)
    return "";
  const auto last = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(first, last - first + 1));
}

// The PEM text of `key` written by `write` (a PEM_write_bio_* function).
template <typename Write>
std::string pem_text(EVP_PKEY* key, Write write) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio || write(bio.get(), key) != 1)
    return "";
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio.get(), &data);
  return length > 0 ? std::string(data, static_cast<size_t>(length)) : std::string();
}

}  // namespace

void KeyDeleter::operator()(EVP_PKEY* key) const {
  EVP_PKEY_free(key);
}

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                      reinterpret_cast<const unsigned char*>(bytes.data()),
                                      static_cast<int>(bytes.size()));
  assert(written >= 0 && static_cast<size_t>(written) == out.size());
  (void)written;
  return out;
}

Result<std::string> base64_decode(std::string_view text) {
  std::string normal;
  normal.reserve(text.size() + 3);
  for (char c : text) {
    if (c == '-')
      c = '+';
    else if (c == '_')
      c = '/';
    const bool valid = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                       c == '+' || c == '/' || c == '=';
    if (!valid)
      return key_error("Not base64.");
    normal += c;
  }
  while (!normal.empty() && normal.back() == '=')
    normal.pop_back();
  const size_t padded_length = normal.size();
  while (normal.size() % 4 != 0)
    normal += '=';
  if (padded_length % 4 == 1 || normal.empty())
    return key_error("Not base64.");
  std::string out(normal.size() / 4 * 3, '\0');
  const int decoded = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                      reinterpret_cast<const unsigned char*>(normal.data()),
                                      static_cast<int>(normal.size()));
  if (decoded < 0)
    return key_error("Not base64.");
  // EVP_DecodeBlock counts the padding's zero bytes too.
  const size_t padding = normal.size() - padded_length;
  out.resize(static_cast<size_t>(decoded) - padding);
  return out;
}

// ---- VerifyingKey ---------------------------------------------------------------------------

Result<VerifyingKey> VerifyingKey::from_handle(KeyHandle key) {
  assert(key != nullptr);
  std::array<unsigned char, raw_key_length> raw{};
  size_t length = raw.size();
  if (EVP_PKEY_get_raw_public_key(key.get(), raw.data(), &length) != 1 ||
      length != raw_key_length) {
    return key_error("The key is not an Ed25519 key.");
  }
  VerifyingKey out;
  out.key_ = std::move(key);
  const std::string_view bytes(reinterpret_cast<const char*>(raw.data()), length);
  out.public_base64_ = base64_encode(bytes);
  out.key_id_ = ledger::sha256_hex(bytes).substr(0, key_id_length);
  assert(out.key_id_.size() == key_id_length);
  return out;
}

Result<VerifyingKey> VerifyingKey::from_text(std::string_view text) {
  const std::string trimmed = trim(text);
  if (trimmed.empty() || trimmed.size() > key_text_length_max)
    return key_error("The public key is empty or too long.");
  if (trimmed.starts_with("-----BEGIN")) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(trimmed.data(), static_cast<int>(trimmed.size())), BIO_free);
    KeyHandle key(bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!key || EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519)
      return key_error("The PEM text is not an Ed25519 public key.");
    return from_handle(std::move(key));
  }
  auto raw = base64_decode(trimmed);
  if (!raw.ok() || raw->size() != raw_key_length)
    return key_error("The public key is neither PEM nor the base64 of 32 bytes.");
  KeyHandle key(EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw->data()), raw->size()));
  if (!key)
    return key_error("The public key is not a valid Ed25519 key.");
  return from_handle(std::move(key));
}

bool VerifyingKey::verify(std::string_view message, std::string_view signature_base64) const {
  assert(key_ != nullptr);
  auto signature = base64_decode(signature_base64);
  if (!signature.ok() || signature->size() != signature_length)
    return false;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(),
                                                                  EVP_MD_CTX_free);
  // Ed25519 is one-shot: no digest is named (RFC 8032 hashes inside).
  if (!context || EVP_DigestVerifyInit(context.get(), nullptr, nullptr, nullptr, key_.get()) != 1) {
    return false;
  }
  return EVP_DigestVerify(context.get(), reinterpret_cast<const unsigned char*>(signature->data()),
                          signature->size(), reinterpret_cast<const unsigned char*>(message.data()),
                          message.size()) == 1;
}

std::string VerifyingKey::public_key_pem() const {
  return pem_text(key_.get(), PEM_write_bio_PUBKEY);
}

// ---- SigningKey -----------------------------------------------------------------------------

Result<SigningKey> SigningKey::from_handle(KeyHandle key) {
  assert(key != nullptr);
  if (EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519)
    return key_error("The signing key is not an Ed25519 key.");
  std::array<unsigned char, raw_key_length> raw{};
  size_t length = raw.size();
  if (EVP_PKEY_get_raw_public_key(key.get(), raw.data(), &length) != 1)
    return key_error("The signing key has no public half.");
  KeyHandle public_only(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, raw.data(), length));
  if (!public_only)
    return key_error("The signing key's public half is not valid.");
  auto verifying = VerifyingKey::from_handle(std::move(public_only));
  if (!verifying.ok())
    return verifying.error();
  SigningKey out;
  out.key_ = std::move(key);
  out.public_ = std::move(verifying).value();
  return out;
}

Result<SigningKey> SigningKey::generate() {
  EVP_PKEY* generated = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (generated == nullptr) {
    return Error{ErrorCode::internal, "key_generation_failed",
                 "OpenSSL could not generate an Ed25519 key."};
  }
  return from_handle(KeyHandle(generated));
}

Result<SigningKey> SigningKey::from_text(std::string_view text) {
  const std::string trimmed = trim(text);
  if (trimmed.empty() || trimmed.size() > key_text_length_max)
    return key_error("The signing key is empty or too long.");
  if (trimmed.starts_with("-----BEGIN")) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(trimmed.data(), static_cast<int>(trimmed.size())), BIO_free);
    KeyHandle key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!key)
      return key_error("The PEM text is not a private key.");
    return from_handle(std::move(key));
  }
  auto seed = base64_decode(trimmed);
  if (!seed.ok() || seed->size() != raw_key_length)
    return key_error("The signing key is neither PEM nor the base64 of a 32-byte seed.");
  KeyHandle key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr,
                                             reinterpret_cast<const unsigned char*>(seed->data()),
                                             seed->size()));
  if (!key)
    return key_error("The seed is not a valid Ed25519 key.");
  return from_handle(std::move(key));
}

Result<SigningKey> SigningKey::load_or_create(const std::string& path) {
  struct stat status {};
  if (::stat(path.c_str(), &status) == 0) {
    // A checkpoint key others can read lets them sign forged checkpoints.
    if ((status.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
      return key_error("Signing key file " + path +
                       " may be read by others; chmod 600 it (or make a new one).");
    }
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    if (!in)
      return key_error("Cannot read the signing key file " + path + ".");
    return from_text(text.str());
  }
  if (errno != ENOENT) {
    return Error{ErrorCode::unavailable, "signing_key_unreadable",
                 "Cannot read " + path + ": " + std::strerror(errno) + "."};
  }
  auto generated = generate();
  if (!generated.ok())
    return generated.error();
  const std::string pem = generated->private_key_pem();
  assert(!pem.empty());
  // O_EXCL: two processes starting at once never both write a key; the loser reads the winner's.
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST)
      return load_or_create(path);
    return Error{ErrorCode::unavailable, "signing_key_unwritable",
                 "Cannot create " + path + ": " + std::strerror(errno) + "."};
  }
  const bool written =
      ::write(fd, pem.data(), pem.size()) == static_cast<ssize_t>(pem.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!written) {
    ::unlink(path.c_str());
    return Error{ErrorCode::unavailable, "signing_key_unwritable",
                 "Cannot write " + path + ": " + std::strerror(errno) + "."};
  }
  return generated;
}

Result<std::string> SigningKey::sign(std::string_view message) const {
  assert(key_ != nullptr);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(),
                                                                  EVP_MD_CTX_free);
  std::array<unsigned char, signature_length> signature{};
  size_t length = signature.size();
  if (!context || EVP_DigestSignInit(context.get(), nullptr, nullptr, nullptr, key_.get()) != 1 ||
      EVP_DigestSign(context.get(), signature.data(), &length,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1 ||
      length != signature_length) {
    return Error{ErrorCode::internal, "signing_failed", "OpenSSL could not sign a checkpoint."};
  }
  std::string out = base64_encode(
      std::string_view(reinterpret_cast<const char*>(signature.data()), signature.size()));
  assert(public_.verify(message, out));
  return out;
}

std::string SigningKey::private_key_pem() const {
  return pem_text(key_.get(), [](BIO* bio, EVP_PKEY* key) {
    return PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  });
}

}  // namespace stub::checkpoints
