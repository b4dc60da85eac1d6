#[derive(aiolite::FromRow, aiolite::Model)]
#[aiolite(table = "users")]
struct User {
    id: i64,
    name: String,
}

fn main() {}
