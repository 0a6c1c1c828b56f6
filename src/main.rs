//! `vlad`: VLAD encodings from `.npy` files on the command line (SPEC §8).
//! Everything lives in [`cli`]; this file only hands over the exit status.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
