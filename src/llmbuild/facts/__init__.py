"""Facts: names, types and rules that hold whatever the configuration says (llama.cpp's quant
types, the chat families, the artifact layout, file-naming rules). Pure data and small pure
functions; they import nothing from llmbuild but `errors`, so every layer can use them."""
