// A template engine's `Context`, next to the `ctx::Context` that should be checked.
mod tera {
    pub struct Context;
}

#[ctx::cancellable]
fn render(template: &str, vars: &tera::Context) -> Option<String> {
    let _ = vars;
    Some(template.to_owned())
}

fn main() {}
