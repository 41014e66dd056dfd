#pragma once

// Every text the API takes (vendor, intent, names, reasons, tag keys and values, ids in paths,
// idempotency keys) is checked here before it can reach a command: valid UTF-8, no NUL and no
// C0 or C1 control characters (nor DEL). Such bytes have no business in the books: a NUL makes
// PostgreSQL refuse a whole batch, and escape sequences would be replayed on an operator's
// terminal by `stub ledger tail`.

#include <string>
#include <string_view>

#include "ledger/result.hpp"

namespace stub::http {

// True when `text` is well-formed UTF-8 (no overlong forms, surrogates or code points above
// U+10FFFF) with no code point below U+0020, U+007F or in U+0080..U+009F.
bool is_clean_text(std::string_view text);

// 400 invalid_text naming `field` unless is_clean_text(text).
Status check_text(std::string_view text, std::string_view field);

}  // namespace stub::http
