use proc_macro::TokenStream; #[proc_macro_attribute] pub fn daemon(_a: TokenStream, i: TokenStream) -> TokenStream { i }
