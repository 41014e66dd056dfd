#include "http/text_checks.hpp"

#include <cassert>
#include <cstdint>

namespace stub::http {

namespace {

bool is_control(uint32_t code_point) {
  return code_point < 0x20 || code_point == 0x7F || (code_point >= 0x80 && code_point <= 0x9F);
}

}  // namespace

bool is_clean_text(std::string_view text) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  const size_t size = text.size();
  size_t i = 0;
  while (i < size) {
    const unsigned char lead = bytes[i];
    uint32_t code_point = 0;
    size_t length = 0;
    uint32_t minimum = 0;
    if (lead < 0x80) {
      code_point = lead;
      length = 1;
    } else if ((lead & 0xE0) == 0xC0) {
      code_point = lead & 0x1F;
      length = 2;
      minimum = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
      code_point = lead & 0x0F;
      length = 3;
      minimum = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
      code_point = lead & 0x07;
      length = 4;
      minimum = 0x10000;
    } else {
      return false;  // a continuation byte without a lead, or 0xF8..0xFF
    }
    if (size - i < length)
      return false;  // truncated sequence
    for (size_t k = 1; k < length; ++k) {
      const unsigned char continuation = bytes[i + k];
      if ((continuation & 0xC0) != 0x80)
        return false;
      code_point = (code_point << 6) | (continuation & 0x3F);
    }
    if (length > 1 && code_point < minimum)
      return false;  // overlong form
    if (code_point > 0x10FFFF || (code_point >= 0xD800 && code_point <= 0xDFFF))
      return false;
    if (is_control(code_point))
      return false;
    i += length;
  }
  assert(i == size);
  return true;
}

Status check_text(std::string_view text, std::string_view field) {
  if (is_clean_text(text))
    return Status::success();
  return Error::invalid("invalid_text", "Field \"" + std::string(field) +
                                            "\" must be valid UTF-8 without control characters.");
}

}  // namespace stub::http
