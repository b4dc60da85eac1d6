// Every bad attribute in one struct is reported in one compile.
#[derive(aiolite::FromRow)]
#[aiolite(rename_all = "Title Case")]
struct User {
    #[aiolite(json(sometimes))]
    tags: Vec<String>,
    #[aiolite(prefix = "a_")]
    name: String,
    #[aiolite(flatten, rename = "x")]
    nested: Option<String>,
    #[aiolite(try_from = "i64", from = "i32")]
    age: u8,
}

fn main() {}
