//! `#[seamless::daemon(pid_file = ..., ...)]` on `fn main`: reads and checks
//! the arguments and the signature, then wraps the user's `main` so that the
//! launcher split (`__private::enter`) runs before any user code and the
//! shutdown handlers (`__private::leave`) run after it.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ItemFn, Path, ReturnType};

use crate::args::{self, Errors};
use crate::duration;

const ATTRIBUTE: &str = "#[seamless::daemon]";

const KEYS: &[&str] = &[
    "pid_file",
    "prepare_timeout",
    "handover_timeout",
    "shutdown_timeout",
    "probation",
    "parent_signal",
    "on_pid_file_error",
    "crate",
];

/// Accepted by `parent_signal`, with or without the `SIG` prefix.
const SIGNALS: &[&str] = &[
    "HUP", "INT", "QUIT", "USR1", "USR2", "ALRM", "TERM", "CHLD", "CONT", "WINCH", "URG", "IO",
    "PWR",
];

/// What `pid_file = ...` says.
enum PidFile {
    /// Any expression that converts into `PidFilePath`.
    Expr(Expr),
    /// `None`, written as such: seamless is disabled.
    Disabled,
}

/// The arguments, each with the span of its key.
#[derive(Default)]
struct Args {
    pid_file: Option<(PidFile, Span)>,
    prepare_timeout: Option<(u64, Span)>,
    handover_timeout: Option<(u64, Span)>,
    shutdown_timeout: Option<(u64, Span)>,
    probation: Option<(u64, Span)>,
    /// Without the `SIG` prefix.
    parent_signal: Option<(String, Span)>,
    /// The variant of `OnPidFileError`.
    on_pid_file_error: Option<(&'static str, Span)>,
    krate: Option<(Path, Span)>,
}

/// Milliseconds of a `"1m30s"`-style literal; the error is on the literal.
fn duration_value(value: &Expr, errors: &mut Errors) -> Option<u64> {
    match args::string_literal(value) {
        Ok(lit) => match duration::parse(&lit.value()) {
            Ok(ms) => Some(ms),
            Err(why) => {
                errors.at(lit.span(), why);
                None
            }
        },
        Err(other) => {
            errors.push(syn::Error::new_spanned(
                other,
                format!("expected a string literal: {}", duration::FORMS),
            ));
            None
        }
    }
}

/// `None`, or an expression; an empty string literal is refused, as
/// `Builder::try_start` refuses an empty path at run time.
fn pid_file_value(value: Expr, errors: &mut Errors) -> Option<PidFile> {
    if let Expr::Path(p) = &value {
        if p.qself.is_none() && p.path.is_ident("None") {
            return Some(PidFile::Disabled);
        }
    }
    if let Ok(lit) = args::string_literal(&value) {
        if lit.value().is_empty() {
            errors.at(
                lit.span(),
                "empty pid file path: write `pid_file = None` to run without seamless",
            );
            // Still given: the error above is the only one.
        }
    }
    Some(PidFile::Expr(value))
}

/// `SIGUSR1`, `"SIGUSR1"` or `"USR1"`: the name without `SIG`.
fn signal_value(value: &Expr, errors: &mut Errors) -> Option<String> {
    let (text, span) = match value {
        Expr::Path(p) if p.qself.is_none() && p.path.get_ident().is_some() => {
            let ident = p.path.get_ident().expect("checked");
            (ident.to_string(), ident.span())
        }
        other => match args::string_literal(other) {
            Ok(lit) => (lit.value(), lit.span()),
            Err(other) => {
                errors.push(syn::Error::new_spanned(
                    other,
                    "expected a signal name such as `SIGUSR1` or \"USR1\"",
                ));
                return None;
            }
        },
    };
    let bare = text.strip_prefix("SIG").unwrap_or(&text);
    if SIGNALS.contains(&bare) {
        Some(bare.to_owned())
    } else {
        errors.at(
            span,
            format!(
                "unknown signal `{text}`: expected one of {} (the `SIG` prefix may be left out)",
                SIGNALS
                    .iter()
                    .map(|s| format!("SIG{s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        None
    }
}

/// `"exit"` or `"run_plain"`: the variant of `OnPidFileError`.
fn policy_value(value: &Expr, errors: &mut Errors) -> Option<&'static str> {
    const EXPECTED: &str = "expected \"exit\" or \"run_plain\"";
    match args::string_literal(value) {
        Ok(lit) => match lit.value().as_str() {
            "exit" => Some("Exit"),
            "run_plain" => Some("RunPlain"),
            _ => {
                errors.at(lit.span(), EXPECTED);
                None
            }
        },
        Err(other) => {
            errors.push(syn::Error::new_spanned(other, EXPECTED));
            None
        }
    }
}

/// Reads every argument, reporting each mistake on its token. Returns
/// whether the list could be read to its end (if not, a missing `pid_file`
/// is not reported: it may be further on).
fn parse_args(tokens: TokenStream, args: &mut Args, errors: &mut Errors) -> bool {
    let mut seen: Vec<String> = Vec::new();
    let parser = syn::meta::parser(|meta| {
        let name = args::key_name(&meta.path);
        let span = meta.path.span();
        let known = KEYS.contains(&name.as_str());
        let duplicate = known && seen.contains(&name);
        if duplicate {
            errors.at(span, format!("duplicate argument `{name}`"));
        }
        seen.push(name.clone());
        if !known {
            errors.at(
                span,
                format!(
                    "unknown argument `{name}`; expected one of {}",
                    args::list(KEYS)
                ),
            );
            return args::skip_value(&meta);
        }
        if name == "crate" {
            let path = args::parse_crate_path(&meta)?;
            if !duplicate {
                args.krate = Some((path, span));
            }
            return Ok(());
        }
        let value: Expr = meta.value()?.parse()?;
        // Check the value of a duplicate too, but keep the first one.
        macro_rules! set {
            ($slot:expr, $value:expr) => {{
                let value = $value;
                if !duplicate {
                    $slot = value.map(|v| (v, span));
                }
            }};
        }
        match name.as_str() {
            "pid_file" => set!(args.pid_file, pid_file_value(value, errors)),
            "prepare_timeout" => set!(args.prepare_timeout, duration_value(&value, errors)),
            "handover_timeout" => set!(args.handover_timeout, duration_value(&value, errors)),
            "shutdown_timeout" => set!(args.shutdown_timeout, duration_value(&value, errors)),
            "probation" => set!(args.probation, duration_value(&value, errors)),
            "parent_signal" => set!(args.parent_signal, signal_value(&value, errors)),
            "on_pid_file_error" => set!(args.on_pid_file_error, policy_value(&value, errors)),
            _ => unreachable!("every key of KEYS is handled"),
        }
        Ok(())
    });
    match syn::parse::Parser::parse2(parser, tokens) {
        Ok(()) => true,
        Err(e) => {
            errors.push(e);
            false
        }
    }
}

/// Attributes that are not runtime attributes: they cannot make an
/// `async fn main` runnable.
fn is_passive(attr: &Attribute) -> bool {
    [
        "doc", "cfg", "allow", "warn", "deny", "forbid", "expect", "must_use", "inline",
    ]
    .iter()
    .any(|name| attr.path().is_ident(name))
}

/// Attributes copied onto the generated `main` as well as kept on the inner
/// function. Not `expect`: on both, the outer one would be unfulfilled. Not
/// `cfg_attr`: it may carry a runtime attribute.
fn also_on_outer(attr: &Attribute) -> bool {
    ["doc", "cfg", "allow", "warn", "deny", "forbid"]
        .iter()
        .any(|name| attr.path().is_ident(name))
}

fn check_signature(f: &ItemFn, errors: &mut Errors) {
    let sig = &f.sig;
    if sig.ident != "main" {
        errors.at(
            sig.ident.span(),
            format!("{ATTRIBUTE} can only be used on `fn main`"),
        );
    }
    if let Some(c) = &sig.constness {
        errors.at(c.span, "`fn main` cannot be `const`");
    }
    if let Some(u) = &sig.unsafety {
        errors.at(u.span, "`fn main` cannot be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new_spanned(abi, "`fn main` cannot be `extern`"));
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
        if f.attrs.iter().all(is_passive) {
            errors.at(
                a.span,
                format!(
                    "`async fn main` needs a runtime: put `#[tokio::main]` (or another \
                     runtime's attribute) below `{ATTRIBUTE}`"
                ),
            );
        }
    }
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let mut parsed = Args::default();
    let complete = parse_args(args.clone(), &mut parsed, &mut errors);
    let f = match args::parse_fn(
        item.clone(),
        &mut errors,
        &format!("{ATTRIBUTE} can only be used on `fn main`"),
    ) {
        Ok(f) => f,
        Err(unchanged) => return unchanged,
    };
    check_signature(&f, &mut errors);
    if complete && parsed.pid_file.is_none() {
        let message = "missing argument `pid_file`: write `pid_file = \"/run/app.pid\"` \
                       (`pid_file = None` disables seamless)";
        if args.is_empty() {
            errors.at(Span::call_site(), message);
        } else {
            errors.push(syn::Error::new_spanned(&args, message));
        }
    }
    if !errors.is_empty() {
        let errs = errors.to_compile_error();
        return quote!(#item #errs);
    }

    let krate = parsed
        .krate
        .map(|(p, _)| p)
        .unwrap_or_else(args::default_crate);
    let (pid_file, pid_span) = parsed.pid_file.expect("checked above");
    let pid_file = match pid_file {
        PidFile::Expr(expr) => quote!(#expr),
        PidFile::Disabled => quote_spanned!(pid_span=> #krate::PidFilePath::Disabled),
    };
    let mut builder = quote_spanned!(pid_span=> #krate::__private::builder(#pid_file));
    let timeouts = [
        ("prepare_timeout", parsed.prepare_timeout),
        ("handover_timeout", parsed.handover_timeout),
        ("shutdown_timeout", parsed.shutdown_timeout),
        ("probation", parsed.probation),
    ];
    for (method, value) in timeouts {
        if let Some((ms, span)) = value {
            let method = syn::Ident::new(method, span);
            builder = quote!(#builder.#method(::core::time::Duration::from_millis(#ms)));
        }
    }
    if let Some((name, span)) = parsed.parent_signal {
        let constant = syn::Ident::new(&format!("SIG{name}"), span);
        builder = quote!(#builder.parent_signal(#krate::Signal::#constant));
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
    let outer_attrs = attrs.iter().filter(|a| also_on_outer(a));
    let output = match &sig.output {
        ReturnType::Default => quote!(),
        ReturnType::Type(arrow, ty) => quote!(#arrow #ty),
    };
    let asyncness = &sig.asyncness;
    let fn_token = &sig.fn_token;
    let main_ident = &sig.ident;
    let inner = quote_spanned!(sig.ident.span()=> __seamless_main);
    quote! {
        #(#outer_attrs)*
        #vis #fn_token #main_ident() #output {
            // Declared first (an item, hoisted: nothing runs before `enter`),
            // so that `clippy::items_after_statements` stays quiet.
            #(#attrs)*
            #asyncness fn #inner() #output #block
            let __seamless_session = #krate::__private::enter(#builder);
            #krate::__private::leave(__seamless_session, #inner())
        }
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    fn expand(args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> String {
        super::expand(args, item).to_string()
    }

    #[test]
    fn plain_main() {
        let got = expand(
            quote!(pid_file = "/run/a.pid"),
            quote!(
                fn main() {
                    work();
                }
            ),
        );
        let want = quote! {
            fn main() {
                fn __seamless_main() { work(); }
                let __seamless_session = ::seamless::__private::enter(
                    ::seamless::__private::builder("/run/a.pid")
                );
                ::seamless::__private::leave(__seamless_session, __seamless_main())
            }
        };
        assert_eq!(got, want.to_string());
    }

    #[test]
    fn every_argument_and_a_runtime_attribute() {
        let got = expand(
            quote!(
                pid_file = path(),
                prepare_timeout = "1m30s",
                handover_timeout = "1500ms",
                shutdown_timeout = "1h",
                probation = "5s",
                parent_signal = USR2,
                on_pid_file_error = "run_plain",
                crate = "my::seamless",
            ),
            quote! {
                /// Docs.
                #[tokio::main]
                #[expect(unused)]
                pub async fn main() -> Result<(), E> { Ok(()) }
            },
        );
        let want = quote! {
            #[doc = r" Docs."]
            pub fn main() -> Result<(), E> {
                #[doc = r" Docs."]
                #[tokio::main]
                #[expect(unused)]
                async fn __seamless_main() -> Result<(), E> { Ok(()) }
                let __seamless_session = my::seamless::__private::enter(
                    my::seamless::__private::builder(path())
                        .prepare_timeout(::core::time::Duration::from_millis(90000u64))
                        .handover_timeout(::core::time::Duration::from_millis(1500u64))
                        .shutdown_timeout(::core::time::Duration::from_millis(3600000u64))
                        .probation(::core::time::Duration::from_millis(5000u64))
                        .parent_signal(my::seamless::Signal::SIGUSR2)
                        .on_pid_file_error(my::seamless::OnPidFileError::RunPlain)
                );
                my::seamless::__private::leave(__seamless_session, __seamless_main())
            }
        };
        assert_eq!(got, want.to_string());
    }

    #[test]
    fn none_disables_and_an_empty_path_is_refused() {
        let got = expand(
            quote!(pid_file = None),
            quote!(
                fn main() {}
            ),
        );
        assert!(
            got.contains(":: seamless :: PidFilePath :: Disabled"),
            "{got}"
        );
        let got = expand(
            quote!(pid_file = ""),
            quote!(
                fn main() {}
            ),
        );
        assert!(got.contains("empty pid file path"), "{got}");
    }

    #[test]
    fn errors_keep_the_item() {
        let item = quote!(
            fn serve() {}
        );
        let got = expand(quote!(pid_file = None, colour = 1), item.clone());
        assert!(got.starts_with(&item.to_string()), "{got}");
        assert!(got.contains("unknown argument `colour`"), "{got}");
        assert!(got.contains("can only be used on `fn main`"), "{got}");
    }

    #[test]
    fn async_main_needs_a_runtime_attribute() {
        let got = expand(
            quote!(pid_file = None),
            quote!(
                #[doc = "x"]
                #[allow(unused)]
                async fn main() {}
            ),
        );
        assert!(got.contains("needs a runtime"), "{got}");
    }
}
