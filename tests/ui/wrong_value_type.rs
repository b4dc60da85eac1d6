#[derive(aiolite::FromRow)]
#[aiolite(rename_all = true)]
struct User {
    #[aiolite(rename = 5)]
    name: String,
    #[aiolite(try_from = "not a type")]
    age: u8,
    #[aiolite(skip = "yes")]
    cache: Option<String>,
}

fn main() {}
