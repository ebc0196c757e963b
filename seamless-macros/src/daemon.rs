//! `#[seamless::daemon(pid_file = ..., ...)]` on `fn main`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ItemFn, LitStr, Path, ReturnType};

use crate::args::{self, Errors};
use crate::duration;

const KEYS: &str = "`pid_file`, `prepare_timeout`, `handover_timeout`, `shutdown_timeout`, `parent_signal`, `on_pid_file_error`, `crate`";

const SIGNALS: &[&str] = &[
    "HUP", "INT", "QUIT", "USR1", "USR2", "ALRM", "TERM", "CHLD", "CONT", "WINCH", "URG", "IO",
    "PWR",
];

#[derive(Default)]
struct Args {
    pid_file: Option<(Expr, Span)>,
    prepare_timeout: Option<(u64, Span)>,
    handover_timeout: Option<(u64, Span)>,
    shutdown_timeout: Option<(u64, Span)>,
    parent_signal: Option<(String, Span)>,
    on_pid_file_error: Option<(&'static str, Span)>,
    krate: Option<(Path, Span)>,
}

fn parse_args(tokens: TokenStream, errors: &mut Errors) -> Args {
    let mut args = Args::default();
    let parser = syn::meta::parser(|meta| {
        let key = meta.path.clone();
        let span = key.span();
        let name = key
            .get_ident()
            .map(|i| i.to_string())
            .unwrap_or_else(|| key.to_token_stream().to_string());
        macro_rules! once {
            ($slot:expr, $value:expr) => {{
                let value = $value;
                if $slot.is_some() {
                    errors.at(span, format!("duplicate argument `{name}`"));
                } else if let Some(v) = value {
                    $slot = Some((v, span));
                }
            }};
        }
        match name.as_str() {
            "pid_file" => {
                let expr: Expr = meta.value()?.parse()?;
                once!(args.pid_file, Some(expr));
            }
            "prepare_timeout" | "handover_timeout" | "shutdown_timeout" => {
                let lit: LitStr = meta.value()?.parse()?;
                let ms = match duration::parse(&lit.value()) {
                    Ok(ms) => Some(ms),
                    Err(why) => {
                        errors.at(lit.span(), why);
                        None
                    }
                };
                match name.as_str() {
                    "prepare_timeout" => once!(args.prepare_timeout, ms),
                    "handover_timeout" => once!(args.handover_timeout, ms),
                    _ => once!(args.shutdown_timeout, ms),
                }
            }
            "parent_signal" => {
                let input = meta.value()?;
                let (text, lit_span) = if input.peek(LitStr) {
                    let lit: LitStr = input.parse()?;
                    (lit.value(), lit.span())
                } else {
                    let ident: syn::Ident = input.parse()?;
                    (ident.to_string(), ident.span())
                };
                let bare = text.strip_prefix("SIG").unwrap_or(&text).to_owned();
                let known = SIGNALS.contains(&bare.as_str());
                if !known {
                    errors.at(
                        lit_span,
                        format!(
                            "unknown signal `{text}`: expected one of {}",
                            SIGNALS
                                .iter()
                                .map(|s| format!("SIG{s}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
                once!(args.parent_signal, known.then_some(bare));
            }
            "on_pid_file_error" => {
                let lit: LitStr = meta.value()?.parse()?;
                let policy = match lit.value().as_str() {
                    "exit" => Some("Exit"),
                    "run_plain" => Some("RunPlain"),
                    _ => {
                        errors.at(lit.span(), "expected \"exit\" or \"run_plain\"");
                        None
                    }
                };
                once!(args.on_pid_file_error, policy);
            }
            "crate" => {
                let path = args::parse_crate_path(meta.value()?)?;
                once!(args.krate, Some(path));
            }
            _ => {
                errors.at(
                    span,
                    format!("unknown argument `{name}`; expected one of {KEYS}"),
                );
                // Skip its value so the other arguments are still checked.
                if meta.input.peek(syn::Token![=]) {
                    let _: Expr = meta.value()?.parse()?;
                }
            }
        }
        Ok(())
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, tokens) {
        errors.push(e);
    }
    args
}

fn check_signature(f: &ItemFn, errors: &mut Errors) {
    let sig = &f.sig;
    const ONLY: &str = "#[seamless::daemon] can only be used on `fn main`";
    if sig.ident != "main" {
        errors.at(sig.ident.span(), ONLY);
    }
    if let Some(c) = &sig.constness {
        errors.at(c.span, "`fn main` cannot be `const`");
    }
    if let Some(u) = &sig.unsafety {
        errors.at(u.span, "`fn main` cannot be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new_spanned(abi, "`fn main` cannot have an ABI"));
    }
    if !sig.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &sig.generics.params,
            "`fn main` cannot be generic",
        ));
    }
    if let Some(w) = &sig.generics.where_clause {
        errors.push(syn::Error::new_spanned(
            w,
            "`fn main` cannot have a where clause",
        ));
    }
    if !sig.inputs.is_empty() {
        errors.push(syn::Error::new_spanned(
            &sig.inputs,
            "`fn main` takes no arguments; read them with `std::env::args()`",
        ));
    }
    if let Some(v) = &sig.variadic {
        errors.push(syn::Error::new_spanned(v, "`fn main` cannot be variadic"));
    }
    if let Some(a) = &sig.asyncness {
        if f.attrs.is_empty() {
            errors.at(
                a.span,
                "`async fn main` needs a runtime: put `#[tokio::main]` (or another runtime's attribute) below `#[seamless::daemon]`",
            );
        }
    }
}

/// Attributes that belong on the generated `main` as well.
fn also_on_outer(attr: &Attribute) -> bool {
    [
        "doc", "cfg", "cfg_attr", "allow", "warn", "deny", "expect", "forbid",
    ]
    .iter()
    .any(|name| attr.path().is_ident(name))
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let parsed = parse_args(args, &mut errors);
    let f: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            errors.push(syn::Error::new_spanned(
                &item,
                "#[seamless::daemon] can only be used on `fn main`",
            ));
            let errs = errors.to_compile_error();
            return quote!(#item #errs);
        }
    };
    check_signature(&f, &mut errors);
    if parsed.pid_file.is_none() && errors.is_empty() {
        errors.at(
            Span::call_site(),
            "missing argument `pid_file`: write #[seamless::daemon(pid_file = \"/run/app.pid\")] (an empty path or None disables seamless)",
        );
    }
    if !errors.is_empty() {
        let errs = errors.to_compile_error();
        return quote!(#f #errs);
    }

    let krate = parsed
        .krate
        .map(|(p, _)| p)
        .unwrap_or_else(args::default_crate);
    let (pid_file, pid_span) = parsed.pid_file.expect("checked above");
    let mut builder = quote_spanned!(pid_span=> #krate::__private::builder(#pid_file));
    let millis = |ms: u64| quote!(::core::time::Duration::from_millis(#ms));
    if let Some((ms, _)) = parsed.prepare_timeout {
        let d = millis(ms);
        builder = quote!(#builder.prepare_timeout(#d));
    }
    if let Some((ms, _)) = parsed.handover_timeout {
        let d = millis(ms);
        builder = quote!(#builder.handover_timeout(#d));
    }
    if let Some((ms, _)) = parsed.shutdown_timeout {
        let d = millis(ms);
        builder = quote!(#builder.shutdown_timeout(#d));
    }
    if let Some((name, span)) = parsed.parent_signal {
        let constant = syn::Ident::new(&format!("SIG{name}"), span);
        builder = quote!(#builder.parent_signal(#krate::__private::libc::#constant));
    }
    if let Some((policy, span)) = parsed.on_pid_file_error {
        let variant = syn::Ident::new(policy, span);
        builder = quote!(#builder.on_pid_file_error(#krate::OnPidFileError::#variant));
    }

    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = f;
    let outer_attrs: Vec<&Attribute> = attrs.iter().filter(|a| also_on_outer(a)).collect();
    let output = match &sig.output {
        ReturnType::Default => quote!(),
        ReturnType::Type(arrow, ty) => quote!(#arrow #ty),
    };
    let asyncness = &sig.asyncness;
    let main_ident = &sig.ident;
    quote! {
        #(#outer_attrs)*
        #vis fn #main_ident() #output {
            let __seamless_session = #krate::__private::enter(#builder);
            #(#attrs)*
            #asyncness fn __seamless_main() #output #block
            #krate::__private::leave(__seamless_session, __seamless_main())
        }
    }
}
