//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the migrations
//! directories at compile time, and Cargo would otherwise not notice a new file in them.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
