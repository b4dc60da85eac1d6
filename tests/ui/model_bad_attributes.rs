#[derive(aiolite::FromRow, aiolite::Model)]
#[aiolite(table = 7)]
struct User {
    #[aiolite(primary_key = "yes")]
    id: i64,
    #[aiolite(flatten)]
    address: Address,
}

#[derive(aiolite::FromRow)]
struct Address {
    city: String,
}

fn main() {}
