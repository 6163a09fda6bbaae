//! nomad-jobspec
#[cfg(test)]
mod probe {
    use hcl_edit::Span;
    #[test]
    fn probe() {
        let src = "a = \"x ${NOMAD_ALLOC_ID} y ${  root.  field[  \"FOO\"].5  } z\"\nb = meta.mytest\n";
        let body = hcl_edit::parser::parse_body(src).unwrap();
        for attr in body.attributes() {
            println!("attr {:?} key span {:?} value span {:?}", attr.key.as_str(), attr.key.span(), attr.value.span());
            if let hcl_edit::expr::Expression::StringTemplate(t) = &attr.value {
                for el in t.iter() {
                    println!("  el span {:?} -> {:?}", el.span(), el.span().map(|r| &src[r]));
                    if let hcl_edit::template::Element::Interpolation(i) = el {
                        println!("  expr span {:?}", i.expr.span().map(|r| &src[r]));
                    }
                }
                let mut t2 = t.clone();
                for el in t2.iter_mut() {
                    if el.is_interpolation() {
                        *el = hcl_edit::template::Element::from("${LIT}".to_string());
                    }
                }
                let e: hcl::Expression = hcl_edit::expr::Expression::StringTemplate(t2).into();
                println!("  converted {:?}", e);
                let ctx = hcl::eval::Context::new();
                use hcl::eval::Evaluate;
                println!("  eval {:?}", e.evaluate(&ctx));
            } else {
                println!("  value text {:?}", attr.value.span().map(|r| &src[r]));
            }
        }
    }
}
