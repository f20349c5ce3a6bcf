fn main() -> std::process::ExitCode {
    fullslack::cli::main()
}
