fn main() {
    println!("dynface");
}
