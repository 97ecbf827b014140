#include "serve/chat_template.h"

#include <gtest/gtest.h>

#include "engine/error.h"

namespace bf::serve {
namespace {

const std::vector<ChatMessage> kChat = {
    {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."}, {"user", "A story?"}};

TEST(ChatTemplate, EachFamilyWritesItsTurns) {
  EXPECT_EQ(format_chat(ChatTemplate::Plain, kChat),
            "System: Be brief.\nUser: Hi\nAssistant: Hello.\nUser: A story?\nAssistant:");
  EXPECT_EQ(format_chat(ChatTemplate::Llama2, kChat),
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] A story? [/INST]");
  EXPECT_EQ(format_chat(ChatTemplate::Zephyr, kChat),
            "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello.</s>\n<|user|>\nA story?</s>\n"
            "<|assistant|>\n");
  EXPECT_EQ(format_chat(ChatTemplate::ChatMl, kChat),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
            "Hello.<|im_end|>\n<|im_start|>user\nA story?<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, RecognizedByTheirMarkersAndUnknownOnesNamed) {
  EXPECT_EQ(recognize_chat_template(""), ChatTemplate::Plain);
  EXPECT_EQ(recognize_chat_template("{% for m in messages %}<|im_start|>{{ m.role }}"), ChatTemplate::ChatMl);
  EXPECT_EQ(recognize_chat_template("{{ '<|user|>\\n' }}...{{ '<|assistant|>\\n' }}"), ChatTemplate::Zephyr);
  EXPECT_EQ(recognize_chat_template("{{ bos_token + '[INST] ' + content + ' [/INST]' }}"), ChatTemplate::Llama2);
  try {
    recognize_chat_template("{{ '<start_of_turn>' }}\nmore");
    FAIL() << "an unknown template was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("<start_of_turn>"), std::string::npos) << e.what();
  }
  EXPECT_EQ(parse_chat_template("--chat-template", "zephyr"), ChatTemplate::Zephyr);
  EXPECT_THROW(parse_chat_template("--chat-template", "jinja"), Error);
}

}  // namespace
}  // namespace bf::serve
