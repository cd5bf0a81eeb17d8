//! Proc macros of `fnhost-guest`. Thin by design: the user's function is
//! re-emitted unchanged, and a hidden module carries the ABI exports, which
//! call into `fnhost_guest::__private` where all conversions live.

#![deny(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{quote, quote_spanned};
use syn::{FnArg, ItemFn, PatType, ReturnType, Type, parse_macro_input, spanned::Spanned};

/// Turns a function into the module's fnhost handler.
///
/// Accepted shapes (the `&Context` argument is optional):
/// - typed JSON: `fn(Event, &Context) -> Result<Output, E>` where `Event:
///   DeserializeOwned`, `Output: Serialize`;
/// - raw bytes: `fn(&[u8] or Vec<u8>, &Context) -> Result<O, E>` where
///   `O: AsRef<[u8]>`.
///
/// `E` is any `Display + 'static` error; it reaches the host as a guest
/// error whose kind is `E`'s type name (or the kind of an
/// `fnhost_guest::Error`).
#[proc_macro_attribute]
pub fn handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    match expand_handler(attr.into(), &func) {
        Ok(ts) => ts.into(),
        Err(e) => {
            let err = e.to_compile_error();
            quote!(#func #err).into()
        }
    }
}

/// Marks a function to run once per instance, before its first invocation:
/// `fn() -> Result<(), E>`. An error fails the invocation that created the
/// instance (and, with snapshots, registration).
#[proc_macro_attribute]
pub fn init(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    match expand_hook(attr.into(), &func, "init", fnhost_abi::exports::INIT) {
        Ok(ts) => ts.into(),
        Err(e) => {
            let err = e.to_compile_error();
            quote!(#func #err).into()
        }
    }
}

/// Marks a function to run on every new instance once its state is ready:
/// after `#[init]`, or when the instance starts from a snapshot (where
/// init does not run again). Re-seed or re-create per-instance things
/// here (random seeds, unique ids): `fn() -> Result<(), E>`.
#[proc_macro_attribute]
pub fn restore(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    match expand_hook(attr.into(), &func, "restore", fnhost_abi::exports::RESTORE) {
        Ok(ts) => ts.into(),
        Err(e) => {
            let err = e.to_compile_error();
            quote!(#func #err).into()
        }
    }
}

fn common_checks(attr: proc_macro2::TokenStream, func: &ItemFn, what: &str) -> syn::Result<()> {
    if !attr.is_empty() {
        return Err(syn::Error::new(
            attr.span(),
            format!("#[{what}] takes no arguments"),
        ));
    }
    let sig = &func.sig;
    if let Some(a) = &sig.asyncness {
        return Err(syn::Error::new(
            a.span(),
            format!("#[{what}] functions cannot be async"),
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            sig.generics.span(),
            format!("#[{what}] functions cannot be generic"),
        ));
    }
    if let Some(r) = sig.receiver() {
        return Err(syn::Error::new(
            r.span(),
            format!("#[{what}] functions cannot take self"),
        ));
    }
    if sig.variadic.is_some() || sig.abi.is_some() {
        return Err(syn::Error::new(
            sig.span(),
            format!("#[{what}] functions must be plain Rust functions"),
        ));
    }
    match &sig.output {
        ReturnType::Type(_, ty) if is_result(ty) => Ok(()),
        ReturnType::Type(_, ty) => Err(syn::Error::new(
            ty.span(),
            format!("#[{what}] functions must return a Result"),
        )),
        ReturnType::Default => Err(syn::Error::new(
            sig.span(),
            format!("#[{what}] functions must return a Result"),
        )),
    }
}

fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
        _ => false,
    }
}

/// Is `ty` `&[u8]`?
fn is_byte_slice(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) => matches!(&*r.elem, Type::Slice(s) if is_u8(&s.elem)),
        _ => false,
    }
}

/// Is `ty` `Vec<u8>`?
fn is_byte_vec(ty: &Type) -> bool {
    let Type::Path(p) = ty else { return false };
    let Some(seg) = p.path.segments.last() else {
        return false;
    };
    if seg.ident != "Vec" {
        return false;
    }
    match &seg.arguments {
        syn::PathArguments::AngleBracketed(a) => {
            a.args.len() == 1
                && matches!(a.args.first(), Some(syn::GenericArgument::Type(t)) if is_u8(t))
        }
        _ => false,
    }
}

fn is_u8(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.path.is_ident("u8"))
}

fn expand_handler(
    attr: proc_macro2::TokenStream,
    func: &ItemFn,
) -> syn::Result<proc_macro2::TokenStream> {
    common_checks(attr, func, "handler")?;
    let sig = &func.sig;
    let args: Vec<&PatType> = sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(t) => Some(t),
            FnArg::Receiver(_) => None,
        })
        .collect();
    let (event_ty, with_ctx) = match args.as_slice() {
        [event] => (&*event.ty, false),
        [event, ctx] => {
            if !matches!(&*ctx.ty, Type::Reference(r) if r.mutability.is_none()) {
                return Err(syn::Error::new(
                    ctx.ty.span(),
                    "the second argument of a handler must be `&fnhost_guest::Context`",
                ));
            }
            (&*event.ty, true)
        }
        [] => {
            return Err(syn::Error::new(
                sig.paren_token.span.join(),
                "a handler takes the event, and optionally `&fnhost_guest::Context`",
            ));
        }
        [_, _, extra, ..] => {
            return Err(syn::Error::new(
                extra.span(),
                "a handler takes at most two arguments: the event and `&fnhost_guest::Context`",
            ));
        }
    };
    let name = &sig.ident;
    let ctx_arg = if with_ctx { quote!(ctx) } else { quote!() };
    let call = if is_byte_slice(event_ty) {
        quote!(::fnhost_guest::__private::run_raw(ptr, len, |event: ::std::vec::Vec<u8>, ctx: &::fnhost_guest::Context| {
            let _ = ctx;
            super::#name(&event, #ctx_arg)
        }))
    } else if is_byte_vec(event_ty) {
        quote!(::fnhost_guest::__private::run_raw(ptr, len, |event: ::std::vec::Vec<u8>, ctx: &::fnhost_guest::Context| {
            let _ = ctx;
            super::#name(event, #ctx_arg)
        }))
    } else {
        // Spanned at the event type, so "not Deserialize" points there.
        quote_spanned!(event_ty.span()=> ::fnhost_guest::__private::run_json(ptr, len, |event: #event_ty, ctx: &::fnhost_guest::Context| {
            let _ = ctx;
            super::#name(event, #ctx_arg)
        }))
    };
    let module = syn::Ident::new(&format!("__fnhost_handler_{name}"), Span::call_site());
    // The export names come from fnhost-abi, the contract the host checks.
    let marker = fnhost_abi::exports::version_marker(fnhost_abi::ABI_VERSION);
    let (alloc, handle) = (fnhost_abi::exports::ALLOC, fnhost_abi::exports::HANDLE);
    Ok(quote! {
        #func

        // Exported under the ABI names on wasm32 only: natively (tests,
        // benchmarks linking several guests) the code is still type-checked
        // but defines no symbols that could clash.
        #[doc(hidden)]
        #[allow(non_snake_case, dead_code)]
        mod #module {
            #[allow(unused_imports)]
            use super::*;

            /// Declares fnhost ABI version 1.
            #[cfg_attr(target_arch = "wasm32", unsafe(export_name = #marker))]
            pub extern "C" fn __fnhost_abi_v1() {}

            #[cfg_attr(target_arch = "wasm32", unsafe(export_name = #alloc))]
            pub extern "C" fn __fnhost_alloc(len: i32) -> i32 {
                ::fnhost_guest::__private::alloc(len)
            }

            #[cfg_attr(target_arch = "wasm32", unsafe(export_name = #handle))]
            pub extern "C" fn __fnhost_handle(ptr: i32, len: i32) -> i32 {
                #call
            }
        }
    })
}

/// `#[init]` and `#[restore]`: a `fn() -> Result<(), E>` exported as
/// `export` (status 0/1, like the handler).
fn expand_hook(
    attr: proc_macro2::TokenStream,
    func: &ItemFn,
    what: &str,
    export: &str,
) -> syn::Result<proc_macro2::TokenStream> {
    common_checks(attr, func, what)?;
    if let Some(arg) = func.sig.inputs.first() {
        return Err(syn::Error::new(
            arg.span(),
            format!("#[{what}] functions take no arguments"),
        ));
    }
    let name = &func.sig.ident;
    let module = syn::Ident::new(&format!("__fnhost_{what}_{name}"), Span::call_site());
    Ok(quote! {
        #func

        // Exported under the ABI names on wasm32 only: natively (tests,
        // benchmarks linking several guests) the code is still type-checked
        // but defines no symbols that could clash.
        #[doc(hidden)]
        #[allow(non_snake_case, dead_code)]
        mod #module {
            #[cfg_attr(target_arch = "wasm32", unsafe(export_name = #export))]
            pub extern "C" fn __fnhost_hook() -> i32 {
                ::fnhost_guest::__private::run_init(super::#name)
            }
        }
    })
}
