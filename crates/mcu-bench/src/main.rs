//! `mcu-bench`: the load generator and benchmarks (see the crate's documentation).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    mcu_bench::cli::main(mcu_bench::cli::BenchArgs::parse())
}
