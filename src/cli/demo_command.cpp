#include "cli/commands.hpp"
namespace stub::cli {
void add_demo_command(CLI::App&, int&) {}
}  // namespace stub::cli
