#pragma once

// The OpenAPI 3.1 description served at /openapi.json. tests/e2e calls every route it lists
// against the real server, so the document stays true.

#include <string>

namespace stub::http {

std::string openapi_document();

}  // namespace stub::http
