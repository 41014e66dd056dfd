// The JSON Canonicalization Scheme (RFC 8785), checked against the RFC's own examples.

#include "ledger/canonical_json.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <boost/json/parse.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace stub::ledger {
namespace {

std::string number(double value) {
  std::string out;
  append_ecmascript_number(out, value);
  return out;
}

std::string canonical(std::string_view json_text) {
  return canonical_json(boost::json::parse(json_text));
}

std::string json_string(std::string_view text) {
  std::string out;
  append_json_string(out, text);
  return out;
}

TEST(EcmascriptNumber, Rfc8785AppendixBSamples) {
  // RFC 8785 Appendix B: IEEE 754 bit patterns and their ECMAScript serialisation.
  const std::vector<std::pair<uint64_t, std::string>> samples = {
      {0x0000000000000000, "0"},
      {0x8000000000000000, "0"},  // minus zero
      {0x0000000000000001, "5e-324"},
      {0x8000000000000001, "-5e-324"},
      {0x7fefffffffffffff, "1.7976931348623157e+308"},
      {0xffefffffffffffff, "-1.7976931348623157e+308"},
      {0x4340000000000000, "9007199254740992"},
      {0xc340000000000000, "-9007199254740992"},
      {0x4430000000000000, "295147905179352830000"},
      {0x44b52d02c7e14af5, "9.999999999999997e+22"},
      {0x44b52d02c7e14af6, "1e+23"},
      {0x44b52d02c7e14af7, "1.0000000000000001e+23"},
      {0x444b1ae4d6e2ef4e, "999999999999999700000"},
      {0x444b1ae4d6e2ef4f, "999999999999999900000"},
      {0x444b1ae4d6e2ef50, "1e+21"},
      {0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
      {0x3eb0c6f7a0b5ed8d, "0.000001"},
      {0x41b3de4355555553, "333333333.3333332"},
      {0x41b3de4355555554, "333333333.33333325"},
      {0x41b3de4355555555, "333333333.3333333"},
      {0x41b3de4355555556, "333333333.3333334"},
      {0x41b3de4355555557, "333333333.33333343"},
      {0xbecbf647612f3696, "-0.0000033333333333333333"},
      {0x43143ff3c1cb0959, "1424953923781206.2"},
  };
  for (const auto& [bits, expected] : samples) {
    EXPECT_EQ(number(std::bit_cast<double>(bits)), expected) << std::hex << bits;
  }
}

TEST(EcmascriptNumber, ChoosesBetweenFixedAndExponentForms) {
  EXPECT_EQ(number(1e21), "1e+21");
  EXPECT_EQ(number(1e20), "100000000000000000000");
  EXPECT_EQ(number(123456789012345680000.0), "123456789012345680000");
  EXPECT_EQ(number(1e-7), "1e-7");
  EXPECT_EQ(number(-1e-7), "-1e-7");
  EXPECT_EQ(number(0.000001), "0.000001");
  EXPECT_EQ(number(0.0000015), "0.0000015");
  EXPECT_EQ(number(1.5e-7), "1.5e-7");
  EXPECT_EQ(number(-0.0), "0");
  EXPECT_EQ(number(0.0), "0");
  EXPECT_EQ(number(1.0), "1");
  EXPECT_EQ(number(-1.0), "-1");
  EXPECT_EQ(number(1.5), "1.5");
  EXPECT_EQ(number(0.1), "0.1");
  EXPECT_EQ(number(100.0), "100");
  EXPECT_EQ(number(1.0 / 3.0), "0.3333333333333333");
  EXPECT_EQ(number(1e30), "1e+30");
  EXPECT_EQ(number(1.25e25), "1.25e+25");
  EXPECT_EQ(number(4.5), "4.5");
  EXPECT_EQ(number(0.002), "0.002");
  EXPECT_EQ(number(1e-27), "1e-27");
  EXPECT_EQ(number(std::numeric_limits<double>::denorm_min()), "5e-324");
}

TEST(CanonicalJson, Rfc8785Section3_2_2Example) {
  // The input of RFC 8785 section 3.2.2 and its canonical form from section 3.2.4. The value is
  // built directly (C++ double literals are correctly rounded, as a JSON parser must be), so that
  // this checks the canonicaliser alone; Boost.JSON 1.81 misreads 333333333.33333329 on parse.
  boost::json::object input;
  input["numbers"] =
      boost::json::array{333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001};
  // "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/" decoded.
  input["string"] = "\xe2\x82\xac$\x0f\nA'B\"\\\\\"/";
  input["literals"] = boost::json::array{nullptr, true, false};
  const std::string expected =
      "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],"
      "\"string\":\"\xe2\x82\xac$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
  EXPECT_EQ(canonical_json(input), expected);
}

TEST(CanonicalJson, Rfc8785Section3_2_2ExampleWithoutProblemNumbers) {
  // The same example through boost::json::parse, minus the one literal Boost.JSON 1.81 rounds
  // wrongly.
  const std::string input = R"({
    "numbers": [1E30, 4.50, 2e-3, 0.000000000000000000000000001],
    "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
    "literals": [null, true, false]
  })";
  const std::string expected =
      "{\"literals\":[null,true,false],\"numbers\":[1e+30,4.5,0.002,1e-27],"
      "\"string\":\"\xe2\x82\xac$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
  EXPECT_EQ(canonical(input), expected);
}

TEST(CanonicalJson, Rfc8785Section3_2_3SortsByUtf16CodeUnits) {
  const std::string input = R"({
    "\u20ac": "Euro Sign",
    "\r": "Carriage Return",
    "\ufb33": "Hebrew Letter Dalet With Dagesh",
    "1": "One",
    "\ud83d\ude00": "Emoji: Grinning Face",
    "\u0080": "Control",
    "\u00f6": "Latin Small Letter O With Diaeresis"
  })";
  // The emoji (surrogates D83D DE00) sorts before U+FB33 even though its UTF-8 bytes (F0 ...)
  // sort after U+FB33's (EF ...).
  const std::string expected =
      "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\xc2\x80\":\"Control\","
      "\"\xc3\xb6\":\"Latin Small Letter O With Diaeresis\",\"\xe2\x82\xac\":\"Euro Sign\","
      "\"\xf0\x9f\x98\x80\":\"Emoji: Grinning Face\","
      "\"\xef\xac\xb3\":\"Hebrew Letter Dalet With Dagesh\"}";
  EXPECT_EQ(canonical(input), expected);
}

TEST(CanonicalJson, NonBmpKeySortsBeforePrivateUseKey) {
  // U+10000 is D800 DC00 in UTF-16, below U+E000; in UTF-8 it is F0 90 80 80, above EE 80 80.
  const std::string input = R"({"\ue000":2,"\ud800\udc00":1,"z":0,"\uffff":3})";
  const std::string expected =
      "{\"z\":0,\"\xf0\x90\x80\x80\":1,\"\xee\x80\x80\":2,\"\xef\xbf\xbf\":3}";
  EXPECT_EQ(canonical(input), expected);
}

TEST(CanonicalJson, SortsNestedObjectsAndKeepsArrayOrder) {
  EXPECT_EQ(canonical(R"({"b":{"z":1,"a":[3,{"y":true,"x":null}]},"a":"",  "aa":[], "A":{}})"),
            R"({"A":{},"a":"","aa":[],"b":{"a":[3,{"x":null,"y":true}],"z":1}})");
  EXPECT_EQ(canonical("[ 3 , 2 , 1 ]"), "[3,2,1]");
  EXPECT_EQ(canonical("{}"), "{}");
  EXPECT_EQ(canonical("[]"), "[]");
  EXPECT_EQ(canonical("null"), "null");
}

TEST(CanonicalJson, NumbersInDocuments) {
  EXPECT_EQ(canonical("[1.0, -0, -0.0, 1e21, 1E-7, 0.000001, 10, -7, 1e20, 0.5e-6]"),
            "[1,0,0,1e+21,1e-7,0.000001,10,-7,100000000000000000000,5e-7]");
  // Integers a double holds exactly print the same whichever way they were parsed.
  EXPECT_EQ(canonical("[9007199254740991, -9007199254740991, 4096]"),
            "[9007199254740991,-9007199254740991,4096]");
}

TEST(CanonicalJson, IntegersBeyondTwoToThe53AreSerialisedAsDoubles) {
  // RFC 8785 section 3.2.2.3: every number is an IEEE 754 double, so a JCS library
  // (for instance in JavaScript) reads 9007199254740993 as 9007199254740992. Boost.JSON parses
  // these literals as int64/uint64 and canonical_json prints them verbatim, so the hash of an
  // entry whose receipt carries such an integer could not be re-verified with another JCS
  // library unless they are written as doubles.
  EXPECT_EQ(canonical("9007199254740993"), "9007199254740992");
  EXPECT_EQ(canonical("18446744073709551615"), "18446744073709552000");
  EXPECT_EQ(canonical("-9223372036854775807"), "-9223372036854776000");
}

TEST(JsonString, EscapesOnlyWhatJcsRequires) {
  EXPECT_EQ(json_string("plain"), "\"plain\"");
  EXPECT_EQ(json_string(""), "\"\"");
  EXPECT_EQ(json_string("quote\" backslash\\ slash/"), "\"quote\\\" backslash\\\\ slash/\"");
  EXPECT_EQ(json_string("\b\f\n\r\t"), "\"\\b\\f\\n\\r\\t\"");
  EXPECT_EQ(json_string(std::string("\0", 1)), "\"\\u0000\"");
  EXPECT_EQ(json_string("\x01"), "\"\\u0001\"");
  EXPECT_EQ(json_string("\x0b"), "\"\\u000b\"");
  EXPECT_EQ(json_string("\x1f"), "\"\\u001f\"");  // lowercase hex
  EXPECT_EQ(json_string("\x1e\x1a"), "\"\\u001e\\u001a\"");
  // DEL and everything non-ASCII is written as is, in UTF-8.
  EXPECT_EQ(json_string("\x7f"), "\"\x7f\"");
  EXPECT_EQ(json_string("\xe2\x82\xac \xf0\x9f\x98\x80 \xe2\x80\xa8"),
            "\"\xe2\x82\xac \xf0\x9f\x98\x80 \xe2\x80\xa8\"");
}

TEST(JsonString, EveryControlCharacterIsEscaped) {
  const std::string short_forms[] = {"b", "t", "n", "", "f", "r"};  // 0x08..0x0d
  for (int c = 0; c < 0x20; ++c) {
    const std::string escaped = json_string(std::string(1, static_cast<char>(c)));
    if (c >= 0x08 && c <= 0x0d && c != 0x0b) {
      EXPECT_EQ(escaped, "\"\\" + short_forms[c - 0x08] + "\"") << c;
    } else {
      char expected[16];
      std::snprintf(expected, sizeof expected, "\"\\u%04x\"", c);
      EXPECT_EQ(escaped, expected) << c;
    }
  }
}

TEST(CanonicalJson, IsIdempotent) {
  const std::string input =
      R"({"z":[1.5,{"\u00e9":"\u0001","e":2e-9}],"a":{"\ud83d\ude00":-0.0,"b":"x\ny"}})";
  const std::string once = canonical(input);
  EXPECT_EQ(canonical(once), once);
}

}  // namespace
}  // namespace stub::ledger
