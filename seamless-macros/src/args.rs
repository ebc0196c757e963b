//! What the attributes share: the error collector, the `crate = path`
//! override, and helpers to read argument values without giving up on the
//! first mistake.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::quote;
use syn::meta::ParseNestedMeta;
use syn::{Expr, Lit, LitStr, Path};

/// Collects every error, to report them all at once.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub(crate) fn to_compile_error(&self) -> TokenStream {
        self.0
            .as_ref()
            .map(syn::Error::to_compile_error)
            .unwrap_or_default()
    }
}

/// The key of one argument as written, for messages (`a::b` for a path).
pub(crate) fn key_name(path: &Path) -> String {
    match path.get_ident() {
        Some(ident) => ident.to_string(),
        None => quote!(#path).to_string().replace(' ', ""),
    }
}

/// `a`, `b`, `c` for an error message.
pub(crate) fn list(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The value of `crate = path` or `crate = "path"`.
pub(crate) fn parse_crate_path(meta: &ParseNestedMeta<'_>) -> syn::Result<Path> {
    let input = meta.value()?;
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        lit.parse()
    } else {
        input.parse()
    }
}

/// Consumes the value of an argument that is reported as unknown (`= expr`
/// or `(...)`), so that the arguments after it are still checked.
pub(crate) fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        let _: Expr = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _: TokenTree = meta.input.parse()?;
    }
    Ok(())
}

/// The string literal in `key = "..."`, or the expression that stands where
/// it should be.
pub(crate) fn string_literal(value: &Expr) -> Result<&LitStr, &Expr> {
    match value {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit),
        Expr::Group(group) => string_literal(&group.expr),
        other => Err(other),
    }
}

/// Whether the tokens of an item that `syn` could not read as a function
/// still look like one (`... fn name ... { ... }`): then the parse error is
/// the useful message, not "can only be used on a function".
pub(crate) fn looks_like_fn(item: &TokenStream) -> bool {
    use proc_macro2::Delimiter;
    for token in item.clone() {
        match token {
            TokenTree::Ident(ident) if ident == "fn" => return true,
            TokenTree::Ident(ident)
                if ["pub", "crate", "const", "async", "unsafe", "extern"]
                    .iter()
                    .any(|word| ident == word) => {}
            TokenTree::Punct(punct) if punct.as_char() == '#' => {}
            TokenTree::Group(group) if group.delimiter() != Delimiter::Brace => {}
            TokenTree::Literal(_) => {}
            _ => return false,
        }
    }
    false
}

/// The default path of the runtime crate.
pub(crate) fn default_crate() -> Path {
    syn::parse_quote!(::seamless)
}

/// Reads the item as a function. When it is not one, records the error
/// (syn's own where the item still looks like a function, else `not_a_fn`
/// on the item) and returns the item unchanged followed by every error, to
/// be emitted as is.
pub(crate) fn parse_fn(
    item: TokenStream,
    errors: &mut Errors,
    not_a_fn: &str,
) -> Result<syn::ItemFn, TokenStream> {
    match syn::parse2(item.clone()) {
        Ok(f) => Ok(f),
        Err(e) => {
            if looks_like_fn(&item) {
                errors.push(e);
            } else {
                errors.push(syn::Error::new_spanned(&item, not_a_fn));
            }
            let errs = errors.to_compile_error();
            Err(quote!(#item #errs))
        }
    }
}
