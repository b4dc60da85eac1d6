#[derive(aiolite::FromRow)]
#[aiolite(rename_al = "camelCase")]
struct User {
    #[aiolite(renam = "full_name")]
    name: String,
}

fn main() {}
