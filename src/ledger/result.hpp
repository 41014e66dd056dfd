#pragma once

// A small typed result for fallible calls in the core and the stores. Expected failures are
// values, never exceptions. An ErrorCode says what kind of failure it is, in domain terms; the
// HTTP edge maps it to a status in exactly one place (src/http/error_mapping.cpp).

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace stub {

enum class ErrorCode {
  invalid_input,  // the request itself is wrong: a retry as is fails again
  unauthorized,   // no usable credential
  forbidden,      // a credential that may not do this
  not_found,      // what the request names does not exist
  conflict,       // the state does not allow it now (a hold not held, a key reused...)
  too_large,      // over a size bound
  overloaded,     // nothing was done: retry later with the same Idempotency-Key
  unavailable,    // the store cannot take writes now (or has stopped taking them)
  internal,       // a bug or a damaged row: nothing was decided
};

struct Error {
  ErrorCode code = ErrorCode::internal;
  std::string subcode;  // machine-readable detail, e.g. "hold_not_held", "invalid_amount"
  std::string message;  // one full sentence for a human

  static Error invalid(std::string subcode, std::string message) {
    return {ErrorCode::invalid_input, std::move(subcode), std::move(message)};
  }
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : state_(std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(state_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(state_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(state_));
  }
  const Error& error() const {
    assert(!ok());
    return std::get<1>(state_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Error> state_;
};

// Status is a Result without a value.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)) {}  // NOLINT: implicit by design
  static Status success() { return {}; }

  bool ok() const { return !error_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const {
    assert(!ok());
    return *error_;
  }

 private:
  std::optional<Error> error_;
};

}  // namespace stub
