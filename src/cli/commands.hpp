// The frugal program's subcommands. Each registers itself on the CLI11 app; main.cpp runs the one
// chosen. Exit status: 0 success, 1 failure, 2 bad usage.
#pragma once

#include <CLI/CLI.hpp>

#include <cstddef>
#include <string_view>

namespace frugal::cli {

inline constexpr int exit_ok = 0;
inline constexpr int exit_failure = 1;
inline constexpr int exit_usage = 2;

/// @brief A byte count with an optional unit: "80GiB", "80GB", "512MiB", "4096", "1.5 GiB".
/// @throws frugal::invalid_argument naming the text when it is not a size.
std::size_t parse_size(std::string_view text);

// Each add_*_command registers a subcommand whose callback does the work; the callback throws
// on failure (frugal::error and friends: exit 1, one line on stderr).
void add_report_command(CLI::App& app);
void add_plan_command(CLI::App& app);
void add_replay_command(CLI::App& app);
void add_quant_command(CLI::App& app);

}  // namespace frugal::cli
