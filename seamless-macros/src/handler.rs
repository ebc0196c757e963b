//! `#[seamless::on_shutdown]`, `#[seamless::on_shutdown_request]` and
//! `#[seamless::on_child_launch]`: register a free function in the runtime
//! crate's link-time registry.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{ItemFn, Path, ReturnType};

use crate::args::{self, Errors};

#[derive(Clone, Copy)]
pub(crate) enum Stage {
    Shutdown,
    ShutdownRequest,
    ChildLaunch,
}

impl Stage {
    fn attribute(self) -> &'static str {
        match self {
            Stage::Shutdown => "#[seamless::on_shutdown]",
            Stage::ShutdownRequest => "#[seamless::on_shutdown_request]",
            Stage::ChildLaunch => "#[seamless::on_child_launch]",
        }
    }

    fn slice(self) -> &'static str {
        match self {
            Stage::Shutdown => "ON_SHUTDOWN",
            Stage::ShutdownRequest => "ON_SHUTDOWN_REQUEST",
            Stage::ChildLaunch => "ON_CHILD_LAUNCH",
        }
    }
}

/// Reads `crate = path`, the only argument; every mistake is reported on
/// its token and the remaining arguments are still read.
fn parse_args(tokens: TokenStream, errors: &mut Errors) -> Option<Path> {
    let mut krate = None;
    let mut seen = false;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            let path = args::parse_crate_path(&meta)?;
            if seen {
                errors.push(syn::Error::new_spanned(
                    &meta.path,
                    "duplicate argument `crate`",
                ));
            } else {
                krate = Some(path);
            }
            seen = true;
        } else {
            errors.push(syn::Error::new_spanned(
                &meta.path,
                format!(
                    "unknown argument `{}`; expected one of {}",
                    args::key_name(&meta.path),
                    args::list(&["crate"])
                ),
            ));
            args::skip_value(&meta)?;
        }
        Ok(())
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, tokens) {
        errors.push(e);
    }
    krate
}

fn check(stage: Stage, f: &ItemFn, errors: &mut Errors) {
    let attr = stage.attribute();
    let sig = &f.sig;
    if let Some(a) = &sig.asyncness {
        errors.at(
            a.span,
            format!("{attr} cannot be used on an `async fn`: handlers run on a plain thread"),
        );
    }
    if let Some(c) = &sig.constness {
        errors.at(c.span, format!("{attr} cannot be used on a `const fn`"));
    }
    if let Some(u) = &sig.unsafety {
        errors.at(u.span, format!("{attr} cannot be used on an `unsafe fn`"));
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new_spanned(
            abi,
            format!("{attr} cannot be used on an `extern` fn"),
        ));
    }
    if !sig.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &sig.generics.params,
            format!("{attr} cannot be used on a generic fn"),
        ));
    }
    if let Some(w) = &sig.generics.where_clause {
        errors.push(syn::Error::new_spanned(
            w,
            format!("{attr} cannot be used with a where clause"),
        ));
    }
    for input in &sig.inputs {
        let message = match input {
            syn::FnArg::Receiver(_) => format!("{attr} goes on a free function, not a method"),
            syn::FnArg::Typed(_) => format!("{attr} handlers take no arguments"),
        };
        errors.push(syn::Error::new_spanned(input, message));
    }
    if let Some(v) = &sig.variadic {
        errors.push(syn::Error::new_spanned(
            v,
            format!("{attr} handlers take no arguments"),
        ));
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        let unit = matches!(&**ty, syn::Type::Tuple(t) if t.elems.is_empty());
        if !unit {
            errors.push(syn::Error::new_spanned(
                ty,
                format!("{attr} handlers return `()`"),
            ));
        }
    }
}

pub(crate) fn expand(stage: Stage, args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let krate = parse_args(args, &mut errors).unwrap_or_else(args::default_crate);
    let not_a_fn = format!("{} can only be used on a free function", stage.attribute());
    let f = match args::parse_fn(item.clone(), &mut errors, &not_a_fn) {
        Ok(f) => f,
        Err(unchanged) => return unchanged,
    };
    check(stage, &f, &mut errors);
    if !errors.is_empty() {
        let errs = errors.to_compile_error();
        return quote!(#item #errs);
    }
    let ident = &f.sig.ident;
    let name = ident.to_string();
    let slice = format_ident!("{}", stage.slice());
    quote! {
        #f
        const _: () = {
            #[#krate::__private::linkme::distributed_slice(#krate::__private::#slice)]
            #[linkme(crate = #krate::__private::linkme)]
            static __SEAMLESS_HANDLER: #krate::__private::Handler = #krate::__private::Handler {
                name: ::core::concat!(::core::module_path!(), "::", #name),
                run: #ident,
            };
        };
    }
}

#[cfg(test)]
mod tests {
    use super::{expand, Stage};
    use quote::quote;

    #[test]
    fn registers_the_function() {
        let got = expand(
            Stage::ShutdownRequest,
            quote!(),
            quote!(
                fn drain() {}
            ),
        );
        let want = quote! {
            fn drain() {}
            const _: () = {
                #[::seamless::__private::linkme::distributed_slice(::seamless::__private::ON_SHUTDOWN_REQUEST)]
                #[linkme(crate = ::seamless::__private::linkme)]
                static __SEAMLESS_HANDLER: ::seamless::__private::Handler = ::seamless::__private::Handler {
                    name: ::core::concat!(::core::module_path!(), "::", "drain"),
                    run: drain,
                };
            };
        };
        assert_eq!(got.to_string(), want.to_string());
    }

    #[test]
    fn crate_path() {
        let got = expand(
            Stage::ChildLaunch,
            quote!(crate = "my::seamless"),
            quote!(
                pub fn launched() -> () {}
            ),
        );
        let got = got.to_string();
        assert!(got.contains("# [my :: seamless :: __private :: linkme :: distributed_slice (my :: seamless :: __private :: ON_CHILD_LAUNCH)]"), "{got}");
    }

    #[test]
    fn every_mistake_is_reported() {
        let item = quote!(
            async fn drain<T>(x: T) -> bool {
                true
            }
        );
        let got = expand(
            Stage::Shutdown,
            quote!(order = 1, crate = x, crate = y),
            item.clone(),
        );
        let got = got.to_string();
        assert!(got.starts_with(&item.to_string()), "{got}");
        for message in [
            "unknown argument `order`; expected one of `crate`",
            "duplicate argument `crate`",
            "cannot be used on an `async fn`",
            "cannot be used on a generic fn",
            "handlers take no arguments",
            "handlers return `()`",
        ] {
            assert!(got.contains(message), "{message}: {got}");
        }
    }
}
