use clap::Parser;

/// Hearth: improve a shared open language model together while everyone's data stays home.
#[derive(Debug, Parser)]
#[command(name = "hearth", version)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
