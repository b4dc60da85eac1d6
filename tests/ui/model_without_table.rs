#[derive(aiolite::FromRow, aiolite::Model)]
struct User {
    #[aiolite(primary_key)]
    id: i64,
    name: String,
}

fn main() {}
