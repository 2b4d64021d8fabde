//! The `relay` binary: everything is in the library; see `qss_relay::cli`.

fn main() -> std::process::ExitCode {
    qss_relay::cli::main()
}
