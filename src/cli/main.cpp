// The frugal program: `frugal report` (the five wastes of GPU memory, before and after frugal),
// `frugal plan` (the memory budget of a model on a GPU), and the subcommands that replay traces
// and evaluate quantization formats. Exit status: 0 success, 1 failure, 2 bad usage; errors go to
// stderr in one line.
#include "common.hpp"

#include <frugal/config.hpp>

#include <cstdio>
#include <exception>
#include <new>
#include <string>

int main(int argc, char** argv) {
  using namespace frugal::cli;
  CLI::App app{"frugal: find and remove the GPU memory an AI serving engine wastes", "frugal"};
  app.set_version_flag("-V,--version", std::to_string(FRUGAL_VERSION_MAJOR) + "." +
                                           std::to_string(FRUGAL_VERSION_MINOR) + "." +
                                           std::to_string(FRUGAL_VERSION_PATCH));
  app.require_subcommand(1);
  app.footer(
      "Every subcommand takes --json. Sizes take units: 80GiB, 80Gi, 80G, 80GB, 0.5TiB, "
      "512MiB, 4096, 1e9.\n"
      "Exit status: 0 success, 1 failure, 2 bad usage.");
  add_report_command(app);
  add_plan_command(app);
  add_replay_command(app);
  add_quant_command(app);

  try {
    // CLI11 reports a mistyped subcommand as a missing one; name it instead.
    if (argc > 1 && argv[1][0] != '-') {
      bool known = false;
      for (const CLI::App* sub : app.get_subcommands({})) known = known || sub->check_name(argv[1]);
      if (!known)
        FRUGAL_FAIL(
            std::string("unknown subcommand \"") + argv[1] + "\"; known: " +
                [&] {
                  std::string names;
                  for (const CLI::App* sub : app.get_subcommands({}))
                    names += (names.empty() ? "" : ", ") + sub->get_name();
                  return names;
                }(),
            usage_error);
    }
    app.parse(argc, argv);
    return exit_ok;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "frugal: error: %s (see frugal --help)\n", one_line(e.what()).c_str());
    return exit_usage;
  } catch (const usage_error& e) {
    std::fprintf(stderr, "frugal: error: %s (see frugal --help)\n", one_line(e.what()).c_str());
    return exit_usage;
  } catch (const std::bad_alloc& e) {
    std::fprintf(stderr, "frugal: error: %s\n", one_line(e.what()).c_str());
    return exit_failure;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "frugal: error: %s\n", one_line(e.what()).c_str());
    return exit_failure;
  }
}
