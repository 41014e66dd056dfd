#include "proxy/secret_box.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "checkpoints/signing_key.hpp"

namespace stub::proxy {

namespace {

constexpr size_t nonce_length = 12;
constexpr size_t tag_length = 16;
constexpr std::string_view sealed_prefix = "v1:";

Error key_error(std::string message) {
  return Error::invalid("invalid_secret_key", std::move(message));
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

std::string_view trimmed(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' '))
    text.remove_suffix(1);
  while (!text.empty() && (text.front() == ' ' || text.front() == '\n'))
    text.remove_prefix(1);
  return text;
}

using CipherContext = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

Error crypto_error() {
  return Error{ErrorCode::internal, "secret_box_failed", "OpenSSL could not seal or open a value."};
}

}  // namespace

Result<SecretBox> SecretBox::from_text(std::string_view text) {
  text = trimmed(text);
  SecretBox box;
  if (text.size() == 2 * key_length) {
    bool hex = true;
    for (size_t i = 0; i < key_length && hex; ++i) {
      const int high = hex_digit(text[2 * i]);
      const int low = hex_digit(text[2 * i + 1]);
      hex = high >= 0 && low >= 0;
      box.key_[i] = static_cast<unsigned char>(high * 16 + low);
    }
    if (hex)
      return box;
  }
  auto decoded = checkpoints::base64_decode(text);
  if (!decoded.ok() || decoded->size() != key_length) {
    return key_error(
        "The secret key must be 64 hex digits or the base64 of 32 bytes (STUB_SECRET_KEY or "
        "--secret-key-file).");
  }
  std::memcpy(box.key_.data(), decoded->data(), key_length);
  return box;
}

Result<SecretBox> SecretBox::generate() {
  SecretBox box;
  if (RAND_bytes(box.key_.data(), static_cast<int>(key_length)) != 1)
    return crypto_error();
  return box;
}

Result<SecretBox> SecretBox::load_or_create(const std::string& path) {
  struct stat status {};
  if (::stat(path.c_str(), &status) == 0) {
    // A key others can read opens every vendor credential in the database.
    if ((status.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
      return key_error("Secret key file " + path +
                       " may be read by others; chmod 600 it (or make a new one).");
    }
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    if (!in)
      return key_error("Cannot read the secret key file " + path + ".");
    return from_text(text.str());
  }
  if (errno != ENOENT) {
    return Error{ErrorCode::unavailable, "secret_key_unreadable",
                 "Cannot read " + path + ": " + std::strerror(errno) + "."};
  }
  auto generated = generate();
  if (!generated.ok())
    return generated.error();
  const std::string text = generated->key_hex() + "\n";
  // O_EXCL: two processes starting at once never both write a key; the loser reads the winner's.
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST)
      return load_or_create(path);
    return Error{ErrorCode::unavailable, "secret_key_unwritable",
                 "Cannot create " + path + ": " + std::strerror(errno) + "."};
  }
  const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                       ::fsync(fd) == 0;
  ::close(fd);
  if (!written) {
    ::unlink(path.c_str());
    return Error{ErrorCode::unavailable, "secret_key_unwritable",
                 "Cannot write " + path + ": " + std::strerror(errno) + "."};
  }
  return generated;
}

std::string SecretBox::key_hex() const {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char byte : key_) {
    out += digits[byte >> 4];
    out += digits[byte & 15];
  }
  return out;
}

Result<std::string> SecretBox::seal(std::string_view plaintext, std::string_view context) const {
  std::string raw(nonce_length + plaintext.size() + tag_length, '\0');
  auto* nonce = reinterpret_cast<unsigned char*>(raw.data());
  auto* cipher = nonce + nonce_length;
  if (RAND_bytes(nonce, static_cast<int>(nonce_length)) != 1)
    return crypto_error();
  CipherContext ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  int length = 0;
  int final_length = 0;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(nonce_length),
                          nullptr) != 1 ||
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, key_.data(), nonce) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &length,
                        reinterpret_cast<const unsigned char*>(context.data()),
                        static_cast<int>(context.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), cipher, &length,
                        reinterpret_cast<const unsigned char*>(plaintext.data()),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), cipher + length, &final_length) != 1 ||
      static_cast<size_t>(length + final_length) != plaintext.size() ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(tag_length),
                          cipher + plaintext.size()) != 1) {
    return crypto_error();
  }
  return std::string(sealed_prefix) + checkpoints::base64_encode(raw);
}

Result<std::string> SecretBox::open(std::string_view sealed, std::string_view context) const {
  const Error unreadable{ErrorCode::internal, "credential_unreadable",
                         "A sealed credential does not open with this secret key."};
  if (!sealed.starts_with(sealed_prefix))
    return unreadable;
  auto raw = checkpoints::base64_decode(sealed.substr(sealed_prefix.size()));
  if (!raw.ok() || raw->size() < nonce_length + tag_length)
    return unreadable;
  const size_t text_length = raw->size() - nonce_length - tag_length;
  auto* nonce = reinterpret_cast<unsigned char*>(raw->data());
  auto* cipher = nonce + nonce_length;
  auto* tag = cipher + text_length;
  std::string plaintext(text_length, '\0');
  auto* out = reinterpret_cast<unsigned char*>(plaintext.data());
  CipherContext ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  int length = 0;
  int final_length = 0;
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(nonce_length),
                          nullptr) != 1 ||
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, key_.data(), nonce) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &length,
                        reinterpret_cast<const unsigned char*>(context.data()),
                        static_cast<int>(context.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), out, &length, cipher, static_cast<int>(text_length)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(tag_length), tag) !=
          1 ||
      EVP_DecryptFinal_ex(ctx.get(), out + length, &final_length) != 1) {
    return unreadable;
  }
  return plaintext;
}

}  // namespace stub::proxy
