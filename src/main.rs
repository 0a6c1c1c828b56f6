fn main() {
    eprintln!("vlad: command line not written yet");
    std::process::exit(1);
}
