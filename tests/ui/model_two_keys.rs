#[derive(aiolite::FromRow, aiolite::Model)]
#[aiolite(table = "users")]
struct User {
    #[aiolite(primary_key)]
    id: i64,
    #[aiolite(primary_key)]
    email: String,
}

fn main() {}
